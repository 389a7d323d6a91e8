"""Attribution after generation: supported sentences cited, invented ones flagged or dropped,
wrong markers corrected or removed (the real cross-encoder; a bag-of-words embedder)."""

from __future__ import annotations

import pytest

from common.contracts.rag import AnswerSource, UnsupportedPolicy
from rag_svc.attribution import Attributed, attribute, key_terms
from rag_svc.reranker import Reranker
from tests.unit.rag_svc.test_verification import bag_of_words

SOURCES = [
    AnswerSource(
        number=1,
        doc_id="wiki-620",
        chunk_id="wiki-620#0",
        text="Animal Farm is an allegorical and dystopian novella by George Orwell, first "
        "published in England on 17 August 1945. According to Orwell, the book reflects "
        "events leading up to the Russian Revolution of 1917.",
        score=0.9,
        metadata={},
        collection="wiki",
        title="Animal Farm",
    ),
    AnswerSource(
        number=2,
        doc_id="wiki-701",
        chunk_id="wiki-701#0",
        text="Angola is a country in Southern Africa. It is bordered by Namibia to the south "
        "and the Atlantic Ocean to the west. The capital and largest city of Angola is Luanda.",
        score=0.8,
        metadata={},
        collection="wiki",
        title="Angola",
    ),
]


@pytest.fixture(scope="module")
def reranker() -> Reranker:
    return Reranker(threads=1)


def run(
    reranker: Reranker,
    answer: str,
    policy: UnsupportedPolicy = "flag",
    question: str = "",
    cut: bool = False,
) -> Attributed:
    return attribute(
        answer,
        question,
        SOURCES,
        reranker,
        bag_of_words,
        threshold=3.0,
        policy=policy,
        lexical_threshold=0.6,
        embedding_threshold=0.65,
        cut=cut,
    )


def test_a_supported_sentence_gets_the_right_citation(reranker: Reranker) -> None:
    result = run(reranker, "The capital of Angola is Luanda.")

    assert result.answer == "The capital of Angola is Luanda [2]."
    [citation] = result.citations
    assert (citation.number, citation.origin, citation.doc_id) == (2, "attributed", "wiki-701")
    assert citation.supported and citation.support is not None and citation.support >= 3.0
    assert result.verified is True
    assert result.attribution.sentences[0].source == 2


def test_an_invented_sentence_gets_no_citation_and_is_flagged(reranker: Reranker) -> None:
    answer = "Animal Farm was written by George Orwell. It was first published in Paris in 1990."

    result = run(reranker, answer)

    first, invented = result.attribution.sentences
    assert (first.supported, first.source) == (True, 1)
    assert (invented.supported, invented.source) == (False, None)
    assert result.attribution.unsupported == "flagged"
    # Kept (flagged) but never cited; the answer is not verified.
    assert result.answer == (
        "Animal Farm was written by George Orwell [1]. It was first published in Paris in 1990."
    )
    assert [c.number for c in result.citations] == [1]
    assert all("1990" not in c.sentence for c in result.citations)
    assert result.verified is False


def test_dropping_takes_unsupported_sentences_out(reranker: Reranker) -> None:
    answer = "The capital of Angola is Lisbon. The capital of Angola is Luanda [1]."

    result = run(reranker, answer, policy="drop")

    assert result.answer == "The capital of Angola is Luanda [2]."
    assert result.attribution.unsupported == "dropped"
    assert [s.supported for s in result.attribution.sentences] == [False, True]
    assert result.verified is False  # an unsupported sentence was written


def test_a_last_sentence_cut_by_max_tokens_is_kept_unfinished(reranker: Reranker) -> None:
    answer = "The capital of Angola is Luanda. Animal Farm was first published on 17 August 19"

    result = run(reranker, answer, policy="drop", cut=True)

    # Kept as written (not dropped, though "19" matches no year), never cited, and the
    # finished sentence before it still verifies the answer.
    assert result.answer == (
        "The capital of Angola is Luanda [2]. Animal Farm was first published on 17 August 19"
    )
    finished, unfinished = result.attribution.sentences
    assert (finished.supported, finished.unfinished) == (True, False)
    assert (unfinished.supported, unfinished.unfinished, unfinished.source) == (False, True, None)
    assert [c.number for c in result.citations] == [2]
    assert result.verified is True


def test_a_cut_answer_that_ended_its_sentence_is_judged_whole(reranker: Reranker) -> None:
    answer = "The capital of Angola is Lisbon."

    result = run(reranker, answer, policy="flag", cut=True)

    [sentence] = result.attribution.sentences
    assert (sentence.supported, sentence.unfinished) == (False, False)
    assert result.verified is False


def test_nothing_supported_is_flagged_not_dropped_to_nothing(reranker: Reranker) -> None:
    result = run(reranker, "Bananas are rich in potassium.", policy="drop")

    assert result.answer == "Bananas are rich in potassium."
    assert result.attribution.unsupported == "flagged"
    assert result.citations == []


def test_a_marker_to_the_wrong_passage_is_corrected(reranker: Reranker) -> None:
    result = run(reranker, "Animal Farm was written by George Orwell [2].")

    assert result.answer == "Animal Farm was written by George Orwell [1]."
    [citation] = result.citations
    assert (citation.number, citation.origin) == (1, "corrected")
    assert result.attribution.corrected == [2]


def test_wrong_and_unknown_markers_beside_a_right_one_are_removed(reranker: Reranker) -> None:
    result = run(reranker, "Luanda is the capital of Angola [2][1][9].")

    assert result.answer == "Luanda is the capital of Angola [2]."
    assert [(c.number, c.origin) for c in result.citations] == [(2, "model")]
    assert result.attribution.removed == [1, 9]


def test_markers_on_an_unsupported_sentence_are_removed(reranker: Reranker) -> None:
    result = run(reranker, "Angola is ruled by the Queen of Denmark [2].")

    assert result.answer == "Angola is ruled by the Queen of Denmark."
    assert result.citations == []
    assert result.attribution.removed == [2]


def test_a_short_answer_is_judged_with_its_question(reranker: Reranker) -> None:
    result = run(reranker, "Luanda.", question="What is the capital of Angola?")

    assert result.answer == "Luanda [2]."
    assert result.verified is True


def test_key_terms_are_numbers_and_names() -> None:
    assert key_terms("The capital of Angola is Lisbon, since 1975.") == {
        "angola",
        "lisbon",
        "1975",
    }
