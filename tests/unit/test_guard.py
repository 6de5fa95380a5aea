"""Body screening before LangServe (empty, non-UTF-8, invalid JSON, config null, batch inputs), and the
jobs of a request whose client leaves."""

import asyncio
import gc
import json

from chains.backends.engine import BatchEngine, GenerationParams
from server.guard import RequestGuard, check_body


def test_empty_body():
    status, message = check_body(b"  ")
    assert status == 422 and "empty" in message


def test_non_utf8_body():
    status, message = check_body(b'{"input": "\xff"}')
    assert status == 400 and "UTF-8" in message


def test_invalid_json_names_the_position():
    status, message = check_body(b'{"input": }')
    assert status == 400 and "line 1 column" in message


def test_config_null_is_dropped():
    body = check_body(b'{"input": {"prompt": "x"}, "config": null}')
    assert json.loads(body) == {"input": {"prompt": "x"}}


def test_batch_needs_a_list():
    status, message = check_body(b'{"inputs": "x"}', "/generate/batch")
    assert status == 422 and "list" in message


def test_good_body_passes_unchanged():
    body = b'{"input": {"prompt": "x"}}'
    assert check_body(body, "/generate/invoke") is body


def serve_until_client_leaves(app) -> list[str]:
    """Run `app` behind RequestGuard for one POST whose client disconnects once the app has started."""
    started, left, sent = asyncio.Event(), [], []

    async def receive() -> dict:
        if not left:
            left.append(True)
            return {"type": "http.request", "body": b'{"input": {}}', "more_body": False}
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message["type"])

    async def run() -> None:
        scope = {"type": "http", "method": "POST", "path": "/chat/stream", "headers": []}
        await RequestGuard(lambda s, r, w: app(s, r, w, started), 1 << 20)(scope, receive, send)

    asyncio.run(run())
    return sent


def test_a_client_that_leaves_cancels_its_jobs_even_when_their_consumer_is_never_closed():
    engine, jobs = BatchEngine(), []  # not started: jobs stay queued

    async def app(scope, receive, send, started) -> None:
        job = engine.submit([1, 2, 3], GenerationParams(max_new_tokens=8))
        job.cycle = job  # its consumer would be freed by the garbage collector only
        jobs.append(job)
        started.set()
        await asyncio.Event().wait()  # waiting on something other than the job's events

    gc.disable()
    try:
        sent = serve_until_client_leaves(app)
        assert len(jobs) == 1 and jobs[0].cancelled.is_set()
        assert sent == []  # nothing is answered to a client that left
    finally:
        gc.enable()


def test_jobs_outside_a_request_are_not_cancelled_by_another_request_leaving():
    engine = BatchEngine()
    outside = engine.submit([1], GenerationParams(max_new_tokens=4))

    async def app(scope, receive, send, started) -> None:
        engine.submit([2], GenerationParams(max_new_tokens=4))
        started.set()
        await asyncio.Event().wait()

    serve_until_client_leaves(app)
    assert not outside.cancelled.is_set()
