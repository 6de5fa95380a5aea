"""Uploaded files to text for retrieval (plain text, Markdown, HTML, PDF, DOCX), each with bounded work."""

from __future__ import annotations

import codecs
import copy
import io
import logging
import re
import zipfile
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import PurePath
from typing import Any

from chains.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

_KINDS = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}
SUPPORTED = tuple(_KINDS)

# what a file may expand to: 20 bytes per allowed character, never less than 50 MB (a .docx's zip entries,
# styles and images included; a PDF's decoded page content streams, drawings included)
_BYTES_PER_CHAR = 20
_MIN_EXPANSION = 50_000_000
_ZIP_MAX_RATIO = 200  # deflate of real XML or media stays far below; zeros reach about 1000
_ZIP_RATIO_FROM = 10_000_000  # the ratio is only judged on entries this large
_ZIP_CHUNK = 1 << 20

# what third-party parsers raise on malformed input, beyond their own error classes
_BROKEN = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    RecursionError,
    EOFError,
    zlib.error,
)
_BLANK_RUNS = re.compile(r"\n{3,}")
_HIDDEN_HTML = frozenset({"script", "style", "noscript", "template", "head"})

logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings on sloppy but readable PDFs are noise


@dataclass(frozen=True)
class Parsed:
    """A document's text; for a PDF, `pages[i]` is the offset in `text` where page i+1 starts."""

    text: str
    pages: tuple[int, ...] = ()
    kind: str = "text"

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding character `offset`, or None when the document has no pages."""
        if not self.pages:
            return None
        return max(bisect_right(self.pages, offset), 1)


def parse_file(filename: str, data: bytes, max_chars: int = 5_000_000) -> Parsed:
    """The text of an uploaded file, its kind chosen by the file name's extension."""
    kind = _KINDS.get(PurePath(filename).suffix.lower())
    if kind is None:
        raise UnsupportedMediaType(
            f"{filename}: unsupported file type; supported extensions: {', '.join(SUPPORTED)}"
        )
    if kind == "pdf":
        return _parse_pdf(filename, data, max_chars)
    if kind == "docx":
        text = _docx_text(filename, data, max_chars)
    elif kind == "html":
        text = _html_text(filename, data)
    else:
        text = _decode(filename, data)
    return _checked(filename, text, kind, max_chars)


def parse_text(text: str, max_chars: int = 5_000_000) -> Parsed:
    """A document sent as text (e.g. in JSON), normalised and checked like a file's."""
    return _checked("the document", text, "text", max_chars)


def _normalise(text: str) -> str:
    """Unix newlines, no NULs or trailing spaces, at most one blank line in a row, stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _checked(filename: str, text: str, kind: str, max_chars: int) -> Parsed:
    """The normalised text as a Parsed, refused when empty or over `max_chars`."""
    text = _normalise(text)
    if not text:
        raise InvalidInput(f"{filename}: contains no text")
    if len(text) > max_chars:
        raise _too_long(filename, max_chars)
    return Parsed(text, kind=kind)


def _too_long(filename: str, max_chars: int) -> PayloadTooLarge:
    """The error for text over the limit."""
    return PayloadTooLarge(
        f"{filename}: its text is over the limit of {max_chars:,} characters "
        "(HFCHAIN_INGEST_MAX_CHARS raises it)"
    )


def _decode(filename: str, data: bytes) -> str:
    """Text bytes as str: UTF-16 with a BOM, else (no NUL bytes: not binary) UTF-8 with or without BOM,
    else cp1252."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        if b"\x00" not in data:
            try:
                return data.decode("utf-8-sig")
            except UnicodeDecodeError:
                return data.decode("cp1252")
    except UnicodeDecodeError:
        pass
    raise InvalidInput(f"{filename}: not a text file (binary data, or an encoding other than UTF-8/16)")


def _html_text(filename: str, data: bytes) -> str:
    """The visible text of an HTML page, decoded as BeautifulSoup would (BOM, declared charset, else
    detected), one text node a line. Streamed through lxml's parser to a target, with no tree: the stdlib
    html.parser takes quadratic time on input such as b"<a" * 100_000, and a BeautifulSoup tree of a dense
    page takes about 2 s and 120 bytes of memory per byte of HTML, this about 0.07 s and 5 bytes."""
    from bs4.dammit import UnicodeDammit
    from lxml import etree

    markup = UnicodeDammit(data, is_html=True).unicode_markup or ""
    if not markup.strip():
        return ""
    try:
        parser = etree.HTMLParser(target=_VisibleText(), encoding="utf-8", huge_tree=True)
        text = etree.fromstring(markup.encode("utf-8", "replace"), parser)
    except (etree.LxmlError, *_BROKEN) as exc:
        raise InvalidInput(f"{filename}: not a readable HTML file") from exc
    return "\n".join(line.strip() for line in text.split("\n"))  # source indentation is not text


class _VisibleText:
    """An lxml parser target keeping the text outside script, style, head and the like (as
    BeautifulSoup's get_text("\\n") would after dropping them); comments are not text."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.hidden = 0

    def start(self, tag: str, attrib: Any) -> None:
        """An element opens: a line break, and hide what follows when it is a hidden kind."""
        self.hidden += tag in _HIDDEN_HTML
        self.out.write("\n")

    def end(self, tag: str) -> None:
        """An element closes: a line break."""
        self.hidden -= tag in _HIDDEN_HTML
        self.out.write("\n")

    def data(self, text: str) -> None:
        """Text, kept unless inside a hidden element."""
        if self.hidden <= 0:
            self.out.write(text)

    def close(self) -> str:
        """The text, once the parser is done."""
        return self.out.getvalue()


def _parse_pdf(filename: str, data: bytes, max_chars: int) -> Parsed:
    """A PDF's text, pages joined by a blank line, refused as soon as it runs over `max_chars`.

    pypdf 7.1.0 bounds decoding itself (pypdf.Configuration, formerly the constants in pypdf/filters.py):
    FlateDecode output to 75 MB (ZLIB_MAX_OUTPUT_LENGTH) with a 5 MB recovery input
    (ZLIB_MAX_RECOVERY_INPUT_LENGTH), a stream's declared /Length to 75 MB (MAX_DECLARED_STREAM_LENGTH),
    LZW, run-length, JBIG2 and array stream outputs to 75 MB each, 300 MB of decoding work per stream
    and 2 M parsing steps per content stream; over one it raises LimitReachedError, answered here with 413.
    """
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise InvalidInput(f"{filename}: the PDF is encrypted with a password; upload it decrypted")
        return _pdf_pages(filename, reader.pages, max_chars)
    except LimitReachedError as exc:
        raise PayloadTooLarge(f"{filename}: the PDF is over pypdf's decoding limits ({exc})") from exc
    except DependencyError as exc:
        raise InvalidInput(f"{filename}: the PDF needs a decoder that is not installed ({exc})") from exc
    except (PyPdfError, *_BROKEN) as exc:
        raise InvalidInput(f"{filename}: not a readable PDF (corrupt or truncated)") from exc


def _pdf_pages(filename: str, pages: Any, max_chars: int) -> Parsed:
    """The pages' text joined by blank lines (a page without text adds none) with each page's offset.

    pypdf keeps each page's decoded content and takes about 1 s per 13 MB of it, even of whitespace: so
    the pages' decoded content streams together are bounded, checked before each page's text is read.
    """
    parts: list[str] = []
    starts: list[int] = []
    length = decoded = 0
    limit = _expansion_limit(max_chars)
    for page in pages:
        contents = page.get_contents()
        decoded += len(contents.get_data()) if contents is not None else 0
        if decoded > limit:
            raise _bomb(filename, f"the PDF's page contents decode to over {limit:,} bytes")
        gap = 2 if length else 0
        starts.append(length + gap)
        visitor = _char_budget(filename, max_chars - length, max_chars)
        text = _normalise(page.extract_text(visitor_text=visitor))
        if text:
            parts.append("\n\n" + text if gap else text)
            length += gap + len(text)
        if length > max_chars:
            raise _too_long(filename, max_chars)
    if not length:
        raise InvalidInput(
            f"{filename}: the PDF has no extractable text (a scanned document?); run OCR on it first"
        )
    return Parsed("".join(parts), tuple(starts), "pdf")


def _char_budget(filename: str, budget: int, max_chars: int) -> Callable[..., None]:
    """A pypdf text visitor that stops a page's extraction once it has shown more than `budget`
    characters that normalising cannot remove, so one huge page cannot run on."""
    shown = 0

    def visit(text: str, *_: Any) -> None:
        nonlocal shown
        shown += sum(map(len, text.split())) - text.count("\x00")
        if shown > budget:
            raise _too_long(filename, max_chars)

    return visit


def _docx_text(filename: str, data: bytes, max_chars: int) -> str:
    """A .docx's paragraphs and table rows in document order, one per line."""
    _check_zip(filename, data, max_chars)
    import docx
    from docx.exceptions import PythonDocxError
    from docx.opc.exceptions import OpcError
    from lxml.etree import LxmlError

    try:
        return "\n".join(_docx_lines(docx.Document(io.BytesIO(data))))
    except (zipfile.BadZipFile, OpcError, PythonDocxError, LxmlError, *_BROKEN) as exc:
        raise InvalidInput(f"{filename}: not a readable .docx file (corrupt or not Word)") from exc


def _docx_lines(document: Any) -> Iterator[str]:
    """Each paragraph's text, and each table row's non-empty cells joined by " | " (a merged cell once)."""
    from docx.table import Table

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                yield " | ".join(text for text, _ in groupby(cell.text for cell in row.cells) if text)
        else:
            yield block.text


def _check_zip(filename: str, data: bytes, max_chars: int) -> None:
    """Refuse a zip that is corrupt, or that expands (as declared or in fact) beyond what its text may
    need: a zip bomb is answered before python-docx inflates anything."""
    limit = _expansion_limit(max_chars)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            declared = sum(entry.file_size for entry in entries)
            if declared > limit:
                raise _bomb(filename, f"the .docx expands to {declared:,} bytes, over the limit of {limit:,}")
            for entry in entries:
                _check_entry(filename, archive, entry)
    except (zipfile.BadZipFile, OSError, RuntimeError, *_BROKEN) as exc:  # RuntimeError: an encrypted entry
        raise InvalidInput(f"{filename}: not a readable .docx file (corrupt zip)") from exc


def _check_entry(filename: str, archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    """Refuse an entry compressed by other than deflate, absurdly compressed, or inflating past its size.

    zipfile inflates a whole entry in one call and only then cuts it to its declared size, so an entry
    that lies about its size could still take any memory: read it here in chunks, allowing one byte more
    than declared (zipfile's CRC check, or the size check here, then refuses a liar).
    """
    if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InvalidInput(f"{filename}: {entry.filename} uses a compression .docx files do not use")
    if entry.file_size > _ZIP_RATIO_FROM and entry.file_size > _ZIP_MAX_RATIO * max(entry.compress_size, 1):
        ratio = entry.file_size // max(entry.compress_size, 1)
        raise _bomb(filename, f"the .docx entry {entry.filename} is compressed {ratio:,} to 1")
    probe = copy.copy(entry)
    probe.file_size += 1
    inflated = 0
    with archive.open(probe) as stream:
        while chunk := stream.read(_ZIP_CHUNK):
            inflated += len(chunk)
            if inflated > entry.file_size:
                raise _bomb(filename, f"the .docx entry {entry.filename} is larger than it declares")


def _expansion_limit(max_chars: int) -> int:
    """The bytes a .docx's entries, or a PDF's page contents, may decode to."""
    return max(_BYTES_PER_CHAR * max_chars, _MIN_EXPANSION)


def _bomb(filename: str, reason: str) -> PayloadTooLarge:
    """The error for a file that would expand too far."""
    return PayloadTooLarge(
        f"{filename}: {reason}; refused as a possible decompression bomb "
        "(the limit grows with HFCHAIN_INGEST_MAX_CHARS)"
    )
