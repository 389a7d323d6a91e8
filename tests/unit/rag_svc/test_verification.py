"""Citation checks: numbers must name a source that supports the sentence citing it."""

from __future__ import annotations

import re

import numpy as np

from common.contracts.rag import AnswerSource, Citation
from rag_svc.verification import cited_sentences, verify_citations

SOURCES = [
    AnswerSource(
        number=1,
        doc_id="eiffel",
        chunk_id="eiffel#0",
        text="The Eiffel Tower stands in Paris. It was completed in 1889.",
        score=0.9,
        metadata={},
    ),
    AnswerSource(
        number=2,
        doc_id="banana",
        chunk_id="banana#0",
        text="Bananas are rich in potassium.",
        score=0.5,
        metadata={},
    ),
]
VOCAB = ["eiffel", "tower", "paris", "1889", "banana", "potassium", "moon", "cheese", "iron"]


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A fake embedder: normalised word counts over a tiny vocabulary."""
    rows = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        v = np.array([sum(w.startswith(t) for w in words) for t in VOCAB], dtype=np.float32)
        rows.append(v / (np.linalg.norm(v) or 1.0))
    return np.stack(rows)


def verify(answer: str) -> tuple[list[Citation], bool]:
    return verify_citations(
        answer, SOURCES, bag_of_words, lexical_threshold=0.6, embedding_threshold=0.8
    )


def test_cited_sentences_parse_marker_styles() -> None:
    parsed = cited_sentences(
        "Paris has a tower [1]. It opened in 1889 [1, 2]. Bananas [2][Source 1]. Done. [2]"
    )
    assert [(s.claim, s.numbers) for s in parsed] == [
        ("Paris has a tower.", [1]),
        ("It opened in 1889.", [1, 2]),
        ("Bananas.", [2, 1]),
        ("Done.", [2]),
    ]


def test_supported_citations_verify() -> None:
    citations, verified = verify(
        "The Eiffel Tower was completed in 1889 [1]. Bananas contain potassium [2]."
    )
    assert verified is True
    assert [(c.number, c.valid, c.supported, c.doc_id) for c in citations] == [
        (1, True, True, "eiffel"),
        (2, True, True, "banana"),
    ]
    assert citations[0].lexical == 1.0


def test_unsupported_and_unknown_citations_are_flagged() -> None:
    citations, verified = verify(
        "The Eiffel Tower was completed in 1889 [1]. The moon is made of cheese [2]. "
        "Iron melts [9]."
    )
    assert verified is False
    assert [(c.number, c.valid, c.supported) for c in citations] == [
        (1, True, True),
        (2, True, False),
        (9, False, False),
    ]
    assert citations[1].lexical == 0.0 and citations[1].semantic < 0.8
    assert citations[2].doc_id is None


def test_semantic_support_counts_without_shared_words() -> None:
    # "Paris's tower" shares too few stems with the source, but its embedding is close.
    citations, _ = verify_citations(
        "Eiffel's Parisian tower [1].",
        SOURCES,
        bag_of_words,
        lexical_threshold=0.99,
        embedding_threshold=0.5,
    )
    assert citations[0].supported is True
    assert citations[0].lexical < 0.99


def test_an_answer_without_citations_is_not_verified() -> None:
    assert verify("The Eiffel Tower is in Paris.") == ([], False)
