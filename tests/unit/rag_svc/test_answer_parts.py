"""The pieces of an answer: fusion, interleaving, the source budget, the self-RAG gate, prompts."""

from __future__ import annotations

import pytest

from common.contracts.rag import SearchResult
from rag_svc.answering import assemble_sources, interleave
from rag_svc.prompts import answer_messages, excerpt, extract_answer, parse_sub_questions
from rag_svc.retrieval import reciprocal_rank_fusion
from rag_svc.self_rag import retrieval_not_needed


def result(chunk_id: str, text: str = "word " * 10) -> SearchResult:
    doc_id = chunk_id.split("#")[0]
    metadata = {"title": chunk_id.upper()}
    return SearchResult(
        doc_id=doc_id, chunk_id=chunk_id, text=text.strip(), score=1.0, metadata=metadata
    )


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["c", "b"]], k=60)
    # Second twice beats first once; ties keep the order they were met in.
    assert [key for key, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(2 / 62)


def test_interleave_gives_every_query_a_say() -> None:
    rankings = [[result("a#0"), result("b#0")], [result("a#0"), result("c#0")], [result("d#0")]]
    assert [r.chunk_id for r in interleave(rankings, 10)] == ["a#0", "d#0", "b#0", "c#0"]
    assert [r.chunk_id for r in interleave(rankings, 2)] == ["a#0", "d#0"]


def test_sources_fit_the_token_budget() -> None:
    results = [result("a#0"), result("b#0"), result("c#0")]

    def one_token_per_word(texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    sources = assemble_sources(results, 36, one_token_per_word)
    # 10 + 10 + 10 fit; then 6 tokens left is below the minimum worth sending.
    assert [s.number for s in sources] == [1, 2, 3]
    sources = assemble_sources(results, 45, one_token_per_word)
    assert [s.number for s in sources] == [1, 2, 3]
    sources = assemble_sources([result("a#0", "word " * 100)], 50, one_token_per_word)
    assert sources[0].text == " ".join(["word"] * 50) + " ..."
    assert assemble_sources(results, 15, one_token_per_word)[-1].number == 1


@pytest.mark.parametrize(
    "question",
    [
        "Hello there!",
        "thanks a lot",
        "What is 17 * 3?",
        "Write a haiku about autumn",
        "Who are you?",
        "good morning",
    ],
)
def test_gate_skips_retrieval(question: str) -> None:
    assert retrieval_not_needed(question) is not None


@pytest.mark.parametrize(
    "question",
    [
        "Who invented the telephone?",
        "What is the capital of Albania?",
        "Hi, what is the population of Angola?",
        "What year did Apollo 11 land?",
    ],
)
def test_gate_keeps_retrieval_for_factual_questions(question: str) -> None:
    assert retrieval_not_needed(question) is None


def test_sub_questions_are_parsed_from_lists() -> None:
    reply = "1. Where was X born?\n2) Which river flows there?\n- Where was X born?\n\nok\nQ3: Why?"
    assert parse_sub_questions(reply, "Original?", 3) == [
        "Where was X born?",
        "Which river flows there?",
    ]
    assert parse_sub_questions("Original?\n- A b?\n- C d?", "Original?", 1) == ["A b?"]


def test_answer_prompt_numbers_sources_with_titles() -> None:
    sources = assemble_sources([result("a#0")], 100, lambda texts: [1] * len(texts))
    messages = answer_messages("Q?", sources)
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    assert messages[1]["content"].startswith("Sources:\n\n[1] A#0\nword")
    assert messages[1]["content"].endswith("Question: Q?")


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: 1945", "1945"),
        (
            "The capital of Angola is Luanda. The answer is Luanda.",
            "The capital of Angola is Luanda.",
        ),
        ("The answer is Luanda.", "The answer is Luanda."),
        ("Luanda is the capital.", "Luanda is the capital."),
    ],
)
def test_the_answer_is_taken_out_of_a_small_models_reply(reply: str, answer: str) -> None:
    assert extract_answer(reply) == answer


def test_an_excerpt_keeps_the_lead_and_the_sentence_that_answers() -> None:
    text = (
        "Animal Farm is a novella by George Orwell. It was published in 1945. "
        + "Filler sentence about nothing in particular. " * 20
        + "The farm is called Manor Farm before the revolution."
    )

    cut = excerpt(text, "What was the farm called before the revolution?", title="Animal Farm")

    assert cut.startswith("Animal Farm is a novella by George Orwell.")
    assert "called Manor Farm before the revolution" in cut
    assert len(cut.split()) <= 70
