"""The response generator: citations checked, sources listed."""

from __future__ import annotations

from common.contracts.rag import Citation
from common.contracts.router import Source
from gateway.response_generator import format_answer, verify_citations

SOURCES = [
    Source(number=1, doc_id="a", text="Bell patented the telephone.", metadata={}),
    Source(number=2, doc_id="b", text="x " * 200, metadata={"title": "Long"}),
]


def _citation(supported: bool, lexical: float, semantic: float) -> Citation:
    return Citation(
        number=1,
        sentence="Bell did it [1].",
        valid=True,
        supported=supported,
        lexical=lexical,
        semantic=semantic,
    )


def test_citations_to_missing_sources_are_removed_and_flagged() -> None:
    text, report = verify_citations("Bell did it [1]. Also [3] and [2].", SOURCES, [])
    assert text == "Bell did it [1]. Also and [2]."
    assert report.removed == [3]
    assert [c.number for c in report.citations] == [1, 2]
    assert report.verified is False


def test_support_scores_are_carried_through() -> None:
    citations = [_citation(supported=True, lexical=0.7, semantic=0.8)]
    _, report = verify_citations("Bell did it [1].", SOURCES, citations)
    assert report.model_dump()["citations"] == [
        {"number": 1, "supported": True, "lexical": 0.7, "semantic": 0.8}
    ]
    assert report.verified is True


def test_an_unsupported_citation_is_not_verified() -> None:
    citations = [_citation(supported=False, lexical=0.1, semantic=0.2)]
    assert verify_citations("Bell [1].", SOURCES, citations)[1].verified is False


def test_answers_without_sources_are_left_alone() -> None:
    formatted = format_answer("Use arrays [0] and lists.", [], [])
    assert formatted.content == "Use arrays [0] and lists."
    assert formatted.verification.verified is None


def test_sources_are_listed_in_number_order_with_short_snippets() -> None:
    formatted = format_answer("See [2] and [1].", list(reversed(SOURCES)), [])
    lines = formatted.content.splitlines()
    assert lines[0] == "See [2] and [1]."
    assert "**Sources**" in lines
    numbered = [line for line in lines if line[:2] in ("1.", "2.")]
    assert numbered[0] == "1. *a*: Bell patented the telephone."
    assert numbered[1].startswith("2. *Long*: x x")
    assert len(numbered[1]) < 200 and numbered[1].endswith("…")


def test_a_source_names_its_title_and_collection() -> None:
    source = Source(
        number=1,
        doc_id="wiki-701",
        text="Luanda is the capital.",
        collection="wiki",
        title="Angola",
    )
    formatted = format_answer("Luanda [1].", [source], [])
    assert formatted.content.splitlines()[-1] == "1. *Angola* (wiki): Luanda is the capital."
