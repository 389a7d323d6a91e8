"""The response generator: format the final answer and verify its citations.

An answer cites its sources as `[n]`. A citation whose number names no
source is removed from the text and flagged; the support scores rag_svc
computed per citation (lexical, semantic, supported) are carried through.
The formatted answer ends with a numbered markdown list of the sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from common.contracts.rag import Citation
from common.contracts.router import Source
from gateway.schemas import CitationCheck, Verification

__all__ = ["FormattedAnswer", "format_answer", "sources_markdown", "verify_citations"]

_CITATION = re.compile(r"\s?\[(\d{1,3})\]")
_SNIPPET_CHARS = 160


@dataclass
class FormattedAnswer:
    content: str
    # What the gateway checked: kept and removed citations, support, verified.
    verification: Verification


def verify_citations(
    text: str, sources: Sequence[Source], citations: Sequence[Citation]
) -> tuple[str, Verification]:
    """Drop `[n]` that name no source; report each citation with its support."""
    numbers = {s.number for s in sources}
    removed: list[int] = []

    def keep_or_drop(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number in numbers:
            return match.group(0)
        removed.append(number)
        return ""

    cleaned = _CITATION.sub(keep_or_drop, text) if sources or citations else text
    support = {c.number: c for c in citations if c.valid}
    cited = sorted({int(m.group(1)) for m in _CITATION.finditer(cleaned)} & numbers)
    kept = [_check(n, support.get(n)) for n in cited]
    verified = bool(kept) and not removed and all(c.supported is not False for c in kept)
    report = Verification(
        citations=kept, removed=sorted(set(removed)), verified=verified if sources else None
    )
    return cleaned, report


def _check(number: int, citation: Citation | None) -> CitationCheck:
    if citation is None:
        return CitationCheck(number=number, supported=None, lexical=None, semantic=None)
    return CitationCheck(
        number=number,
        supported=citation.supported,
        lexical=citation.lexical,
        semantic=citation.semantic,
    )


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1].rstrip() + "…"


def sources_markdown(sources: Sequence[Source]) -> str:
    """`**Sources**` and one numbered line per source (title or doc id, its collection, then
    a snippet)."""
    if not sources:
        return ""
    lines = ["", "", "**Sources**", ""]
    for source in sorted(sources, key=lambda s: s.number):
        title = source.title or source.metadata.get("title") or source.doc_id
        where = f" ({source.collection})" if source.collection else ""
        lines.append(f"{source.number}. *{title}*{where}: {_snippet(source.text)}")
    return "\n".join(lines)


def format_answer(
    text: str, sources: Sequence[Source], citations: Sequence[Citation]
) -> FormattedAnswer:
    """The answer as the user sees it: citations checked, sources listed."""
    cleaned, report = verify_citations(text.strip(), sources, citations)
    return FormattedAnswer(cleaned + sources_markdown(sources), report)
