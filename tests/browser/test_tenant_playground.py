"""The chat playground behind keys, as a person meets it: the browser's Basic login (the key as password)
opens it, the session it keeps belongs to that key's tenant; without a key the page is refused."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.browser.conftest import open_page
from tests.browser.test_playgrounds import FACT, QUESTION, assert_clean, chat_turn, fill_form
from tests.conftest import hfchain_server
from tests.server.test_tenants import make_key


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, embedded_backend):
    data = tmp_path_factory.mktemp("browser-tenants")
    keys = {name: make_key(data, name) for name in ("alice", "bob")}
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(data), HFCHAIN_MAX_NEW_TOKENS="24").wait("/ready")
    yield proc, keys
    proc.stop()


def test_the_chat_playground_opens_with_a_key_and_its_session_is_that_tenants(browser, keyed_server):
    server, keys = keyed_server
    session = f"browser-{uuid.uuid4().hex[:8]}"
    login = {"http_credentials": {"username": "alice", "password": keys["alice"]}}
    with open_page(browser, "tenant-chat-playground", **login) as page:
        page.goto(f"{server.url}/chat/playground/")
        fill_form(page, session_id=session)
        chat_turn(page, FACT)
        second = chat_turn(page, QUESTION)
        assert [role for role, _ in second] == ["human", "ai"] * 2 and second[3][1]
        assert_clean(page)
    url = f"{server.url}/sessions/{session}"
    assert httpx.get(url, headers={"Authorization": f"Bearer {keys['alice']}"}).json()["turns"] == 2
    assert httpx.get(url, headers={"Authorization": f"Bearer {keys['bob']}"}).status_code == 404


@pytest.mark.parametrize("password", [None, "not-a-key"])
def test_without_a_valid_key_the_browser_gets_no_playground(browser, keyed_server, password):
    """The 401 is a Basic challenge (a person gets the login dialog); headless Chromium with no key or a
    wrong one either gives up on the page or shows the 401's message."""
    from playwright.sync_api import Error

    server, _ = keyed_server
    login = {"http_credentials": {"username": "x", "password": password}} if password else {}
    with open_page(browser, f"tenant-playground-{password or 'no-key'}", **login) as page:
        try:
            response = page.goto(f"{server.url}/chat/playground/")
        except Error as error:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error)
        else:
            assert response.status == 401 and "API key" in page.content()
