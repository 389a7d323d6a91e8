"""The response generator: format the final answer and verify its citations.

An answer cites its sources as `[n]`. A citation whose number names no
source is removed from the text and flagged; the support scores rag_svc
computed per citation (lexical, semantic, supported) are carried through.
The formatted answer ends with a numbered markdown list of the sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FormattedAnswer", "format_answer", "sources_markdown", "verify_citations"]

_CITATION = re.compile(r"\s?\[(\d{1,3})\]")
_SNIPPET_CHARS = 160


@dataclass
class FormattedAnswer:
    content: str
    # What the gateway checked: kept and removed citations, support, verified.
    verification: dict[str, Any] = field(default_factory=dict)


def verify_citations(
    text: str, sources: list[dict[str, Any]], citations: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Drop `[n]` that name no source; report each citation with its support."""
    numbers = {int(s["number"]) for s in sources if "number" in s}
    removed: list[int] = []

    def keep_or_drop(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number in numbers:
            return match.group(0)
        removed.append(number)
        return ""

    cleaned = _CITATION.sub(keep_or_drop, text) if sources or citations else text
    support = {int(c["number"]): c for c in citations if c.get("valid", True) and "number" in c}
    cited = sorted({int(m.group(1)) for m in _CITATION.finditer(cleaned)} & numbers)
    kept = [
        {
            "number": n,
            "supported": support.get(n, {}).get("supported"),
            "lexical": support.get(n, {}).get("lexical"),
            "semantic": support.get(n, {}).get("semantic"),
        }
        for n in cited
    ]
    verified = bool(kept) and not removed and all(c["supported"] is not False for c in kept)
    report = {
        "citations": kept,
        "removed": sorted(set(removed)),
        "verified": verified if sources else None,
    }
    return cleaned, report


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1].rstrip() + "…"


def sources_markdown(sources: list[dict[str, Any]]) -> str:
    """`**Sources**` and one numbered line per source (title or doc id, then a snippet)."""
    if not sources:
        return ""
    lines = ["", "", "**Sources**", ""]
    for source in sorted(sources, key=lambda s: int(s.get("number", 0))):
        metadata = source.get("metadata") or {}
        title = metadata.get("title") or source.get("doc_id", "source")
        lines.append(f"{source.get('number')}. *{title}*: {_snippet(str(source.get('text', '')))}")
    return "\n".join(lines)


def format_answer(text: str, pipeline: dict[str, Any] | None) -> FormattedAnswer:
    """The answer as the user sees it: citations checked, sources listed."""
    pipeline = pipeline or {}
    sources = list(pipeline.get("sources") or [])
    citations = list(pipeline.get("citations") or [])
    cleaned, report = verify_citations(text.strip(), sources, citations)
    return FormattedAnswer(cleaned + sources_markdown(sources), report)
