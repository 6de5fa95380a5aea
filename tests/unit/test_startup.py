"""The garbage collector paused during start-up and resumed, frozen, when the model load ends (or the
start fails)."""

import gc
from concurrent.futures import Future

import pytest

from server import startup


@pytest.fixture
def restored():
    yield
    startup.resume_gc()
    gc.unfreeze()
    gc.enable()


def test_collection_resumes_when_the_load_ends_however_it_ends(restored):
    for outcome in ("result", "exception"):
        startup.pause_gc()
        assert not gc.isenabled()
        loading: Future = Future()
        startup.after_load(loading)
        assert not gc.isenabled()  # still loading
        if outcome == "result":
            loading.set_result(None)
        else:
            loading.set_exception(OSError("no weights"))
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()


def test_a_backend_without_a_background_load_resumes_at_once(restored):
    startup.pause_gc()
    startup.after_load(None)
    assert gc.isenabled()


def test_resume_without_pause_leaves_the_collector_alone(restored):
    gc.unfreeze()
    startup.after_load(None)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_serve_that_fails_before_loading_turns_the_collector_back_on(restored, monkeypatch):
    from typer.testing import CliRunner

    from server.cli import app

    monkeypatch.setenv("HFCHAIN_PORT", "not-a-port")
    assert CliRunner().invoke(app, ["serve"]).exit_code == 2
    assert gc.isenabled() and gc.get_freeze_count() == 0
