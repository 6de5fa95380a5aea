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
    ("span", "times", "expected"),
    [
        ([7] * 16, 4, True),
        ([7] * 15, 4, False),  # "1000000000000000": digits are one token each, a number is not cut
        ([1, 2] * 8, 4, True),
        ([9, 9, 1, 2, 3, 4, 5] * 4, 4, True),  # a unit of 7 tokens, four times
        ([9, 9, 1, 2, 3, 4, 5] * 3, 4, False),
        ([1, 2] * 7, 8, False),  # array items: eight times
        ([1, 2] * 8, 8, True),
        (list(range(30)), 4, False),
    ],
)
def test_repeats_finds_a_short_unit_said_again_and_again(span, times, expected):
    assert repeats(span, times) is expected


def test_an_array_starts_at_its_first_item_or_its_end():
    assert scanned("json", '{"a": [').state == "first"
    assert scanned("json", '{"a": [1, ').state == "value"
