"""Uploaded files to text: each kind, page offsets, and refusals (415, 422, 413) that name the file."""

from __future__ import annotations

import codecs
import dataclasses
import time
import tracemalloc

import pytest
from pypdf import PageObject

from chains.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from chains.knowledge.parsing import SUPPORTED, Parsed, parse_file, parse_text
from tests.fixtures.documents import (
    docx_bytes,
    flate_bomb_pdf,
    html_bytes,
    lying_zip_docx,
    pdf_bytes,
    zip_bomb_docx,
)


def test_plain_text_and_markdown_are_normalised():
    data = b"Title  \r\n\r\n\r\n\r\nBody line\t\r\nlast line\n\n"
    assert parse_file("notes.txt", data) == Parsed("Title\n\nBody line\nlast line", kind="text")
    parsed = parse_file("README.MD", b"# Head\n\n- item\n")
    assert (parsed.text, parsed.kind, parsed.pages) == ("# Head\n\n- item", "markdown", ())
    assert parse_file("a.markdown", b"x").kind == "markdown"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (codecs.BOM_UTF8 + "café".encode(), "café"),
        (codecs.BOM_UTF16_LE + "naïve ünïcode".encode("utf-16-le"), "naïve ünïcode"),
        (codecs.BOM_UTF16_BE + "big end".encode("utf-16-be"), "big end"),
        ("Grüße – cp1252".encode("cp1252"), "Grüße – cp1252"),
    ],
)
def test_text_encodings(data, text):
    assert parse_file("doc.txt", data).text == text


def test_binary_text_file_is_refused():
    with pytest.raises(InvalidInput, match=r"blob\.txt.*not a text file"):
        parse_file("blob.txt", b"ELF\x00\x01\x02binary" + bytes(range(256)))
    with pytest.raises(InvalidInput, match=r"nul\.md"):
        parse_file("nul.md", b"looks like text\x00but has NULs")


@pytest.mark.parametrize("name", ["setup.exe", "README", "archive.tar.gz", ""])
def test_unsupported_extension_lists_the_supported_ones(name):
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_file(name, b"hello")
    assert caught.value.status_code == 415
    assert caught.value.message.startswith(f"{name}:")
    assert all(ext in caught.value.message for ext in SUPPORTED)


def test_extension_is_case_insensitive():
    assert parse_file("Report.PDF", pdf_bytes(["upper case"])).kind == "pdf"
    assert parse_file("PAGE.HTM", html_bytes("<p>hi</p>")).text == "hi"


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  ", b"\xef\xbb\xbf \n"])
def test_whitespace_only_text_is_refused(data):
    with pytest.raises(InvalidInput, match=r"empty\.txt: contains no text"):
        parse_file("empty.txt", data)


def test_parse_text_checks_like_a_file():
    assert parse_text("  a\r\nb  \n\n\n\nc\x00 ") == Parsed("a\nb\n\nc")
    with pytest.raises(InvalidInput, match="no text"):
        parse_text(" \n\t ")
    with pytest.raises(PayloadTooLarge, match="HFCHAIN_INGEST_MAX_CHARS"):
        parse_text("x" * 11, max_chars=10)
    assert parse_text("x" * 10, max_chars=10).text == "x" * 10


def test_text_over_the_limit_is_413_naming_the_file():
    with pytest.raises(PayloadTooLarge) as caught:
        parse_file("big.txt", b"word " * 100, max_chars=100)
    assert caught.value.status_code == 413
    assert "big.txt" in caught.value.message
    assert "100" in caught.value.message
    assert "HFCHAIN_INGEST_MAX_CHARS" in caught.value.message


def test_html_keeps_visible_text_only():
    body = """
    <script>var secret = "js";</script>
    <style>p { color: red }</style>
    <noscript>enable js</noscript>
    <template><p>hidden template</p></template>
    <h1>Heading</h1>
    <p>First paragraph with <b>bold</b>.</p>
    <!-- a comment -->
    <p>Second paragraph
           wrapped in the source</p>
    """
    parsed = parse_file("page.html", html_bytes(body, head="<title>Tab title</title><style>x{}</style>"))
    assert parsed.kind == "html"
    assert parsed.pages == ()
    for gone in ("secret", "color", "enable js", "hidden template", "Tab title", "comment"):
        assert gone not in parsed.text
    assert parsed.text.startswith("Heading\n\nFirst paragraph with\nbold\n.")
    assert parsed.text.endswith("Second paragraph\nwrapped in the source")
    assert "\n\n\n" not in parsed.text


def test_html_respects_its_declared_charset():
    data = html_bytes("<p>Ça coûte 5 €</p>", charset="windows-1252")
    assert parse_file("fr.html", data).text == "Ça coûte 5 €"


def test_html_that_nests_or_closes_badly_still_parses():
    data = b"<p>one<p>two</b></i><script>x = 1;<p>not text</script>three<div><div><span>four"
    assert parse_file("sloppy.htm", data).text == "one\n\ntwo\n\nthree\n\nfour"
    deep = b"<p>before</p>" + b"<div>" * 5000 + b"inside" + b"</div>" * 5000 + b"<p>after</p>"
    assert parse_file("deep.html", deep).text == "before\n\ninside\n\nafter"


def test_pathological_html_takes_linear_time():
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="no text"):
        parse_file("tags.html", b"<a" * 200_000)  # the stdlib html.parser takes about a minute on this
    parsed = parse_file("ends.html", b"</" * 200_000 + b"<p>text")
    assert parsed.text == "text"
    assert time.monotonic() - started < 2.0


def test_html_without_text_is_refused():
    with pytest.raises(InvalidInput, match=r"blank\.html: contains no text"):
        parse_file("blank.html", html_bytes("<script>x()</script><img src='a.png'>"))


def test_pdf_pages_and_offsets():
    pages = ["Page one (intro)\nsecond line", "Page two \\ back", "Page three"]
    parsed = parse_file("three.pdf", pdf_bytes(pages))
    assert parsed.kind == "pdf"
    assert parsed.text == "Page one (intro)\nsecond line\n\nPage two \\ back\n\nPage three"
    assert parsed.pages == (0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4)
    for number, start in enumerate(parsed.pages, start=1):
        assert parsed.page_at(start) == number
        assert parsed.text[start:].startswith(pages[number - 1].split("\n")[0])
    assert parsed.page_at(0) == 1
    assert parsed.page_at(parsed.pages[1] - 1) == 1
    assert parsed.page_at(len(parsed.text) - 1) == 3
    assert parsed.page_at(len(parsed.text) + 50) == 3


def test_pdf_page_without_text_owns_no_characters():
    parsed = parse_file("gap.pdf", pdf_bytes(["", "alpha", "", "omega"]))
    assert parsed.text == "alpha\n\nomega"
    assert parsed.pages == (0, 0, 7, 7)
    assert [parsed.page_at(i) for i in (0, 4, 7, 11)] == [2, 2, 4, 4]


def test_page_at_is_none_without_pages():
    assert parse_file("a.txt", b"abc").page_at(1) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse_file("a.txt", b"abc").text = "changed"  # type: ignore[misc]


def test_encrypted_pdf_is_refused():
    with pytest.raises(InvalidInput) as caught:
        parse_file("locked.pdf", pdf_bytes(["classified"], encrypt_with="hunter2"))
    assert caught.value.status_code == 422
    assert "locked.pdf" in caught.value.message
    assert "encrypted" in caught.value.message
    assert "decrypted" in caught.value.message


def test_pdf_with_an_empty_user_password_opens():
    parsed = parse_file("open.pdf", pdf_bytes(["readable by anyone"], encrypt_with=""))
    assert parsed.text == "readable by anyone"


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4 garbage", b"", b"not a pdf at all", pdf_bytes(["cut short"])[:-60]],
)
def test_corrupt_pdf_is_422(data):
    with pytest.raises(InvalidInput) as caught:
        parse_file("broken.pdf", data)
    assert caught.value.status_code == 422
    assert "broken.pdf" in caught.value.message


def test_pdf_without_text_suggests_ocr():
    with pytest.raises(InvalidInput, match=r"scan\.pdf.*no extractable text.*OCR"):
        parse_file("scan.pdf", pdf_bytes(["", " ", ""]))


@pytest.fixture
def extractions(monkeypatch):
    """Each page.extract_text call, recorded as the text it returned or 'raised'."""
    calls: list[str] = []
    original = PageObject.extract_text

    def spy(self, *args, **kwargs):
        try:
            text = original(self, *args, **kwargs)
        except Exception:
            calls.append("raised")
            raise
        calls.append(text)
        return text

    monkeypatch.setattr(PageObject, "extract_text", spy)
    return calls


def test_pdf_over_the_limit_stops_early(extractions):
    data = pdf_bytes([f"page {i} " + "x" * 40 for i in range(50)])
    with pytest.raises(PayloadTooLarge, match=r"long\.pdf.*100.*HFCHAIN_INGEST_MAX_CHARS"):
        parse_file("long.pdf", data, max_chars=100)
    assert len(extractions) == 3


def test_one_huge_pdf_page_stops_mid_page(extractions):
    data = pdf_bytes(["\n".join(f"line {i} of a long page" for i in range(300))])
    with pytest.raises(PayloadTooLarge, match=r"huge\.pdf"):
        parse_file("huge.pdf", data, max_chars=200)
    assert extractions == ["raised"]


def test_pdf_flate_bomb_is_stopped_by_pypdf_limit():
    data = flate_bomb_pdf(megabytes=100)  # over pypdf's 75 MB FlateDecode output limit
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge, match=r"bomb\.pdf: .*decod"):
        parse_file("bomb.pdf", data)
    assert time.monotonic() - started < 2.0


def test_pdf_page_contents_over_the_expansion_limit_are_refused_before_parsing(extractions):
    # 60 MB of content: under pypdf's own limit, over 50 MB (the least that a small max_chars allows)
    data = flate_bomb_pdf(megabytes=60)
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge, match=r"spaces\.pdf: the PDF's page contents decode to over 50,"):
        parse_file("spaces.pdf", data, max_chars=1000)
    assert time.monotonic() - started < 2.0  # pypdf would take seconds to parse 60 MB of whitespace
    assert extractions == []


def test_pdf_at_the_limit_passes():
    parsed = parse_file("fit.pdf", pdf_bytes(["a" * 40, "b" * 40]), max_chars=82)
    assert len(parsed.text) == 82


def test_docx_paragraphs_and_table_in_order():
    data = docx_bytes(
        ["Introduction", "", "Second paragraph"],
        table=[["Name", "Score"], ["Ada", "10"], ["", "blank name"]],
    )
    parsed = parse_file("report.docx", data)
    assert parsed.kind == "docx"
    assert parsed.pages == ()
    assert parsed.text == "Introduction\n\nSecond paragraph\nName | Score\nAda | 10\nblank name"


def test_docx_over_the_limit_is_413():
    with pytest.raises(PayloadTooLarge, match=r"long\.docx.*HFCHAIN_INGEST_MAX_CHARS"):
        parse_file("long.docx", docx_bytes(["word " * 50] * 5), max_chars=100)


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 not really a zip", b"plain text", docx_bytes(["x"])[:500], html_bytes("<p>zip?</p>")],
)
def test_corrupt_docx_is_422(data):
    with pytest.raises(InvalidInput, match=r"bad\.docx: not a readable \.docx"):
        parse_file("bad.docx", data)


def test_zip_that_is_not_word_is_422():
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(InvalidInput, match=r"other\.docx"):
        parse_file("other.docx", out.getvalue())


def test_zip_bomb_is_refused_quickly():
    data = zip_bomb_docx()
    assert len(data) < 2_000_000
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge) as caught:
        parse_file("bomb.docx", data)
    assert time.monotonic() - started < 1.0
    assert "bomb.docx" in caught.value.message
    assert "decompression bomb" in caught.value.message


def test_absurdly_compressed_entry_is_refused_under_the_size_limit():
    with pytest.raises(PayloadTooLarge, match=r"ratio\.docx.*compressed [\d,]+ to 1"):
        parse_file("ratio.docx", zip_bomb_docx(megabytes=20))


def test_entry_inflating_past_its_declared_size_is_refused_in_bounded_memory():
    data = lying_zip_docx(megabytes=50)  # python-docx alone parses it, after inflating all 50 MB at once
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match=r"liar\.docx: not a readable \.docx"):
            parse_file("liar.docx", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000
