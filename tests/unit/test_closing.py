"""The closing policy's JSON scanner and the repetition test, without a model."""

import pytest

from chains.tools.closing import JsonScan
from chains.tools.constraint import repeats


def scanned(mode: str, *pieces: str) -> JsonScan:
    scan = JsonScan(mode)
    for piece in pieces:
        scan.feed(piece.encode())
    return scan


@pytest.mark.parametrize(
    ("pieces", "state", "depth"),
    [
        ([], "value", 0),
        (['{"', "name"], "string", 1),
        (['{"', "name", '":'], "value", 1),
        (['{"', "a", '": "', 'x\\"', "y"], "string", 1),  # an escaped quote stays inside
        (['{"a": [', "1"], "after", 2),
        (['{"a": [1', ","], "value", 2),
        (['{"a": 1', ","], "key", 1),
        (['{"a": {"b": "c"}}'], "after", 0),
    ],
)
def test_the_scan_follows_json(pieces, state, depth):
    scan = scanned("json", *pieces)
    assert (scan.state, scan.depth) == (state, depth)


def test_the_scan_starts_at_a_call_tag_and_returns_to_text_after_it():
    scan = scanned("text", 'He said "hi" {', "<tool_", "call>\n")
    assert (scan.state, scan.depth) == ("value", 0)
    scan.feed(b'{"name": "f", "arguments": {"x": "')
    assert (scan.state, scan.depth, scan.innermost()) == ("string", 2, 3)  # opened by the fourth token
    scan.feed(b'1"}}')
    assert scan.state == "none" and scan.innermost() is None
    assert scanned("off", '{"a": "').state == "none"


def test_copies_are_independent():
    scan = scanned("json", '{"a": [')
    copy = scan.copy()
    copy.feed(b"1]}")
    assert (scan.depth, copy.depth) == (2, 0)


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ([7] * 8, True),
        ([7] * 7, False),
        ([1, 2] * 4, True),
        ([1, 2] * 3, False),
        ([9, 9, 1, 2, 3, 4, 5] * 3, True),  # a unit of 7 tokens, three times
        ([5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], False),
        (list(range(30)), False),
    ],
)
def test_repeats_finds_a_short_unit_said_again_and_again(span, expected):
    assert repeats(span) is expected
