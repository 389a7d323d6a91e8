"""Plain text (and a title) from uploaded files: txt, md, html, pdf.

Errors::

    ExtractionError            the file is of a supported type but unreadable (400)
    UnsupportedFileType        neither its name nor its content type is supported (415)
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import PurePath

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ExtractedText",
    "ExtractionError",
    "UnsupportedFileType",
    "detect_kind",
    "extract_text",
]

SUPPORTED_EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
_CONTENT_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}


class ExtractionError(ValueError):
    """A supported file whose text cannot be read."""


class UnsupportedFileType(ValueError):
    """A file that is not txt, md, html or pdf."""


@dataclass(frozen=True)
class ExtractedText:
    text: str
    title: str | None
    kind: str


def detect_kind(filename: str | None, content_type: str | None) -> str:
    """The file's kind by extension, else by content type; raises `UnsupportedFileType`."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS:
        return SUPPORTED_EXTENSIONS[suffix]
    media_type = (content_type or "").split(";")[0].strip().lower()
    if not suffix and media_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[media_type]
    supported = ", ".join(sorted(set(SUPPORTED_EXTENSIONS.values())))
    described = suffix or media_type or "no extension"
    raise UnsupportedFileType(f"Unsupported file type ({described}); upload one of: {supported}.")


def extract_text(data: bytes, kind: str) -> ExtractedText:
    if kind == "pdf":
        return _pdf(data)
    text = _decode(data)
    if kind == "html":
        return _html(text)
    if kind == "md":
        return _markdown(text)
    return ExtractedText(text.strip(), None, "txt")


def _decode(data: bytes) -> str:
    if b"\x00" in data[:4096]:
        raise ExtractionError("The file looks binary, not text.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Legacy single-byte text: every byte decodes, so nothing is lost silently.
        return data.decode("cp1252", errors="replace")


def _pdf(data: bytes) -> ExtractedText:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("The PDF is encrypted.")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        if isinstance(exc, ExtractionError):
            raise
        raise ExtractionError(f"Could not read the PDF: {exc}") from exc
    return ExtractedText("\n\n".join(p for p in pages if p), str(title) if title else None, "pdf")


_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table"}
    | {"section", "article", "header", "footer", "pre", "blockquote", "dd", "dt", "main"}
    | {"nav", "aside", "figure", "figcaption", "hr"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.h1_parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip_depth:
            self.parts.append(data)
            if self._in_h1:
                self.h1_parts.append(data)


def _tidy(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _html(markup: str) -> ExtractedText:
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    title = " ".join("".join(parser.title_parts).split()) or " ".join(
        "".join(parser.h1_parts).split()
    )
    return ExtractedText(_tidy("".join(parser.parts)), title or None, "html")


# Horizontal whitespace only: `\s` with re.M would swallow the blank lines of paragraphs.
_MD_RULES = [
    (re.compile(r"^```[^\n]*$|^~~~[^\n]*$", re.M), ""),  # code fences (the code stays)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: their text
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M), r"\1"),  # headings
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), ""),  # block quotes
    (re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.M), ""),  # list markers
    (re.compile(r"^[ \t]*(?:-{3,}|\*{3,}|_{3,})[ \t]*$", re.M), ""),  # rules
    (re.compile(r"(\*\*|__)(\S(?:.*?\S)?)\1"), r"\2"),  # bold
    (re.compile(r"(?<!\w)([*_])(\S(?:.*?\S)?)\1(?!\w)"), r"\2"),  # italics
    (re.compile(r"`([^`]+)`"), r"\1"),  # inline code
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML
    (re.compile(r"^[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*$", re.M), ""),  # table rules
    (re.compile(r"[ \t]*\|[ \t]*"), " "),  # table cells
]


def _markdown(text: str) -> ExtractedText:
    heading = re.search(r"^[ \t]{0,3}#[ \t]+(.+?)[ \t]*#*[ \t]*$", text, re.M)
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return ExtractedText(_tidy(unescape(text)), heading.group(1) if heading else None, "md")
