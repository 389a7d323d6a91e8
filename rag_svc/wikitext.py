"""Wikipedia pages from gensim's test data, as plain text.

gensim ships a shortened English Wikipedia dump (`enwiki-latest-pages-articles1
...-shortened.bz2`, about 100 articles plus redirects) and a few pages with
tables. We read the XML with the standard library (gensim itself is not
imported) and turn wikitext into paragraphs: templates, tables, references,
files and categories go; links keep their label; headings become paragraphs;
the reference sections at the end are dropped.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WikiPage", "gensim_test_data_dir", "iter_wiki_pages", "wikitext_to_text"]

DUMPS = (
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "enwiki-table-markup.xml.bz2",
)
_TAIL_SECTIONS = re.compile(
    r"^==+\s*(?:See also|References|Notes|External links|Further reading|Bibliography|"
    r"Sources|Footnotes|Citations)\s*==+\s*$",
    re.M | re.I,
)
_DROPPED_LINKS = re.compile(
    r"^(?:file|image|category|media|wikipedia|wp|[a-z]{2,3}(?:-[a-z]+)?):", re.I
)


@dataclass(frozen=True)
class WikiPage:
    page_id: str
    title: str
    text: str


def gensim_test_data_dir() -> Path:
    """`gensim/test/test_data` in site-packages (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "gensim is not installed: pip install --no-deps -c requirements/assets.txt gensim"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"


def _strip_nested(text: str, opener: str, closer: str) -> str:
    """Remove every `opener ... closer` span, nested ones included."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(text):
        if text.startswith(opener, i):
            depth += 1
            i += len(opener)
        elif depth and text.startswith(closer, i):
            depth -= 1
            i += len(closer)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def _replace_links(text: str) -> str:
    """[[target|label]] -> label; files, categories and interwiki links vanish (nested too)."""
    out: list[str] = []
    stack: list[list[str]] = []
    i = 0
    while i < len(text):
        if text.startswith("[[", i):
            stack.append([])
            i += 2
        elif stack and text.startswith("]]", i):
            inner = "".join(stack.pop())
            target, _, label = inner.partition("|")
            replacement = "" if _DROPPED_LINKS.match(target.strip()) else (label or target)
            (stack[-1] if stack else out).append(replacement)
            i += 2
        else:
            (stack[-1] if stack else out).append(text[i])
            i += 1
    return "".join(out)


def wikitext_to_text(wikitext: str) -> str:
    text = _TAIL_SECTIONS.split(wikitext, maxsplit=1)[0]
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    text = re.sub(r"<(gallery|math|timeline|score)[^>]*>.*?</\1>", "", text, flags=re.S)
    text = _strip_nested(text, "{{", "}}")
    text = _strip_nested(text, "{|", "|}")
    text = _replace_links(text)
    text = re.sub(r"\[https?://[^\s\]]+\s*([^\]]*)\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\n\2\n", text, flags=re.M)  # headings
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.M)  # list and indent markers
    # Brackets emptied (or left starting with separators) by removed templates.
    text = re.sub(r"\(\s*(?:[,;]\s*)+", "(", text)
    text = re.sub(r"\s*\(\s*\)", "", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _pages(path: Path) -> Iterator[tuple[str, str, str, str]]:
    with bz2.open(path, "rb") as f:
        for _, element in ET.iterparse(f):
            if _local(element.tag) != "page":
                continue
            # The page's own title, ns and id are direct children; revisions and
            # contributors nest ids of their own.
            fields = {_local(child.tag): child.text or "" for child in element}
            text = next((e.text or "" for e in element.iter() if _local(e.tag) == "text"), "")
            element.clear()
            yield fields.get("id", ""), fields.get("title", ""), fields.get("ns", "0"), text


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_wiki_pages(max_pages: int = 0, max_chars: int = 0) -> Iterator[WikiPage]:
    """Articles (namespace 0, not redirects) as plain text, `max_chars` each at most."""
    count = 0
    seen: set[str] = set()
    for dump in DUMPS:
        path = gensim_test_data_dir() / dump
        if not path.is_file():
            continue
        for page_id, title, namespace, wikitext in _pages(path):
            if namespace != "0" or wikitext.lstrip().upper().startswith("#REDIRECT"):
                continue
            if page_id in seen:
                continue
            seen.add(page_id)
            text = wikitext_to_text(wikitext)
            if max_chars and len(text) > max_chars:
                # Cut at the last paragraph break before the limit.
                cut = text.rfind("\n\n", 0, max_chars)
                text = text[: cut if cut > max_chars // 2 else max_chars]
            if len(text) < 200:
                continue
            yield WikiPage(page_id, title, text)
            count += 1
            if max_pages and count >= max_pages:
                return
