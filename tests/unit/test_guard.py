"""Body screening before LangServe: empty, non-UTF-8, invalid JSON, config null, batch inputs."""

import json

from server.guard import check_body


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
