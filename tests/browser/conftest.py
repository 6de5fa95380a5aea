"""Playwright driving Debian's Chromium against a real server: pages checked as a person meets them."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCREENSHOTS = Path(os.environ.get("HFCHAIN_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
# Chromium's own background traffic is refused on a closed network: keep it quiet (and sandbox-free as root)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium (Playwright's own browser download cannot be reached here)."""
    found = os.environ.get("HFCHAIN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "no Chromium for the browser tests: install Debian's package (`apt-get install -y chromium`; "
            "`make test` does it when run as root) or set HFCHAIN_CHROMIUM to a Chromium binary"
        )
    return found


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop: gone before other tests
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class PageLog:
    """What the page reported: console errors, uncaught exceptions, requests that failed or left the host."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    posts: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def open_page(browser, name: str, **options) -> Iterator:
    """A page in a fresh context (`options`: e.g. http_credentials); its log is `page.log`; a screenshot
    named `name` is saved when it closes."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, **options)
    page = context.new_page()
    page.set_default_timeout(90_000)  # waits for a model reply on a busy 2-core machine
    log = PageLog()
    page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log.errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: log.failed.append(f"{r.url} {r.failure}"))
    page.on("request", lambda r: _record(log, r))
    page.log = log
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tall = _height(page) > 5000  # redoc: a full shot takes 30 s
        page.screenshot(
            path=str(SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"), full_page=not tall
        )
        context.close()


@pytest.fixture
def page(browser, request) -> Iterator:
    """A fresh page; its log is `page.log`; a screenshot is saved after the test."""
    with open_page(browser, request.node.name) as opened:
        yield opened


def _height(page) -> int:
    """The page's height (0 while Chromium still replaces a document, e.g. its JSON viewer's)."""
    from playwright.sync_api import Error

    try:
        page.wait_for_load_state()
        return page.evaluate("document.documentElement?.scrollHeight ?? 0")
    except Error:
        return 0


def _record(log: PageLog, request) -> None:
    if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
        log.external.append(request.url)
    if request.method == "POST":
        log.posts.append((request.url, request.post_data or ""))


@pytest.fixture(scope="session")
def hamlet() -> str:
    return (ROOT / "tests" / "fixtures" / "hamlet_excerpt.txt").read_text()
