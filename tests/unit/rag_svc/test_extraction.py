"""Text extraction from uploads: txt, md, html, pdf; unsupported and unreadable files."""

from __future__ import annotations

import pytest

from rag_svc.extraction import (
    ExtractionError,
    UnsupportedFileType,
    detect_kind,
    extract_text,
)
from tests.integration.rag_support import minimal_pdf


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        ("notes.TXT", None, "txt"),
        ("readme.md", "application/octet-stream", "md"),
        ("page.htm", None, "html"),
        ("paper.pdf", None, "pdf"),
        (None, "text/html; charset=utf-8", "html"),
        ("blob", None, None),
        ("tool.exe", "text/plain", None),
        ("archive.zip", None, None),
    ],
)
def test_detect_kind(filename: str | None, content_type: str | None, kind: str | None) -> None:
    if kind is None:
        with pytest.raises(UnsupportedFileType, match="txt"):
            detect_kind(filename, content_type)
    else:
        assert detect_kind(filename, content_type) == kind


def test_html_keeps_text_and_title_drops_scripts() -> None:
    html = (
        b"<html><head><title> Volcano  Facts </title><style>p{}</style></head><body>"
        b"<script>var secret = 1;</script><h1>Volcanoes</h1><p>Etna &amp; Vesuvius"
        b"<br>erupt.</p><ul><li>one</li><li>two</li></ul></body></html>"
    )
    extracted = extract_text(html, "html")
    assert extracted.title == "Volcano Facts"
    assert extracted.text == "Volcanoes\n\nEtna & Vesuvius\n\nerupt.\n\none\n\ntwo"


def test_markdown_loses_markup_keeps_paragraphs() -> None:
    md = (
        b"# Guide\n\nSome **bold** and _italic_ text with a [link](http://x.test) and "
        b"![alt text](img.png).\n\n- item one\n- item `two`\n\n> quoted"
    )
    extracted = extract_text(md, "md")
    assert extracted.title == "Guide"
    assert extracted.text == (
        "Guide\n\nSome bold and italic text with a link and alt text.\n\n"
        "item one\nitem two\n\nquoted"
    )


def test_text_decoding() -> None:
    assert extract_text("café\n".encode(), "txt").text == "café"
    assert extract_text("café".encode("cp1252"), "txt").text == "café"
    with pytest.raises(ExtractionError, match="binary"):
        extract_text(b"\x00\x01\x02binary", "txt")


def test_pdf_text_and_broken_pdf() -> None:
    extracted = extract_text(minimal_pdf(["Glaciers carve fjords.", "Second (line)."]), "pdf")
    assert extracted.text == "Glaciers carve fjords.\nSecond (line)."
    with pytest.raises(ExtractionError, match="PDF"):
        extract_text(b"%PDF-1.4 this is not a pdf", "pdf")
