"""Stop sequences: whole texts and streams cut at every possible point."""

import pytest

from chains.stops import StopFilter, filter_stream, first_stop, truncate_at_stop


def test_truncate_cuts_before_earliest_stop():
    assert truncate_at_stop("one two three four", ["four", "two"]) == ("one ", True)


def test_truncate_without_match_or_stops_keeps_text():
    assert truncate_at_stop("abc", ["x"]) == ("abc", False)
    assert truncate_at_stop("abc", None) == ("abc", False)
    assert truncate_at_stop("abc", [""]) == ("abc", False)


TEXT = "The answer is 42.\nUser: next question"


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_stream_catches_stop_split_at_any_point(cut):
    chunks = [TEXT[:cut], TEXT[cut:]]
    out = list(filter_stream(chunks, ["\nUser:"]))
    assert "".join(out) == "The answer is 42."
    assert not any("User" in piece for piece in out)


def test_stream_one_char_at_a_time_with_multi_token_stop():
    assert "".join(filter_stream(list(TEXT), ["is 42"])) == "The answer "


def test_stream_releases_held_tail_when_no_stop_follows():
    stop_filter = StopFilter(["\nUser:"])
    assert stop_filter.feed("done\nUs") == "done"
    assert stop_filter.feed("ually") == "\nUsually"
    assert stop_filter.flush() == ""


def test_stream_flushes_a_partial_stop_at_the_end():
    assert "".join(filter_stream(["end\nUs"], ["\nUser:"])) == "end\nUs"


def test_overlapping_prefix_is_found():
    assert "".join(filter_stream(["aab", "abc"], ["abc"])) == "aab"


def test_no_stops_passes_every_chunk_through():
    assert list(filter_stream(["a", "b"], None)) == ["a", "b"]


def test_stream_stops_consuming_after_the_stop():
    consumed = []

    def chunks():
        for piece in ["x", "STOP", "never"]:
            consumed.append(piece)
            yield piece

    assert list(filter_stream(chunks(), ["STOP"])) == ["x"]
    assert consumed == ["x", "STOP"]


def test_the_stop_that_ended_a_stream_is_known_however_it_was_split():
    assert first_stop("one two three", ["three", "two", "tw"]) == "two"  # earliest, longest there
    assert first_stop("nothing here", ["stop"]) is None
    for split in range(1, 12):
        text = "answer: 42 END more"
        stream = StopFilter(["END", "42 E"])
        out = "".join(stream.feed(text[i : i + split]) for i in range(0, len(text), split))
        assert out == "answer: " and stream.matched == "42 E"
    quiet = StopFilter(["END"])
    quiet.feed("no stop")
    assert quiet.matched is None
