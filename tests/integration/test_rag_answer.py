"""Cited answers: rag_svc against a scripted OpenAI-compatible chat server as moe_svc."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.servers import RunningServer
from tests.integration.rag_support import start_fake_moe, start_rag

pytestmark = pytest.mark.integration

DOCS = [
    {
        "id": "eiffel",
        "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed "
        "in 1889 as the entrance arch to the World's Fair.",
        "metadata": {"title": "Eiffel Tower"},
    },
    {
        "id": "gustave",
        "text": "Gustave Eiffel was a French civil engineer. He was born in Dijon in 1832.",
        "metadata": {"title": "Gustave Eiffel"},
    },
    {
        "id": "dijon",
        "text": "Dijon is a city in eastern France, the capital of Burgundy. The Ouche river "
        "flows through Dijon.",
        "metadata": {"title": "Dijon"},
    },
    {
        "id": "glaciers",
        "text": "Alpine glaciers lost about three metres of ice thickness in 2022, the "
        "largest melt since measurements began.",
        "metadata": {"title": "Glaciers"},
    },
    {
        "id": "budget-report",
        "text": "The annual report published last winter said the committee met four times "
        "and approved the budget without changes.",
        "metadata": {"title": "Committee report"},
    },
]


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_fake_moe(tmp_path_factory.mktemp("fake_moe"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory, moe: RunningServer) -> Iterator[RunningServer]:
    server = start_rag(tmp_path_factory.mktemp("rag"), upstreams={"moe_svc": moe.url})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/v1/collections", json={"name": "kb"}).status_code == 201
        response = client.post("/v1/collections/kb/documents", json={"documents": DOCS})
        assert response.json()["ids"] == [d["id"] for d in DOCS]
    yield server
    server.stop()


def script(moe: RunningServer, *rules: dict[str, Any]) -> None:
    assert httpx.put(f"{moe.url}/script", json=list(rules)).status_code == 200


def asked(moe: RunningServer) -> list[str]:
    """The text of every chat request the fake received since it was last scripted."""
    bodies = httpx.get(f"{moe.url}/requests").json()
    return ["\n".join(m["content"] for m in body["messages"]) for body in bodies]


def answer(rag: RunningServer, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{rag.url}/v1/collections/kb/answer", json=body, timeout=120)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_answer_cites_its_sources_and_is_verified(rag: RunningServer, moe: RunningServer) -> None:
    script(moe, {"contains": "Sources:", "reply": "The Eiffel Tower was completed in 1889 [1]."})

    result = answer(rag, question="When was the Eiffel Tower completed?", k=2)

    assert result["answer"] == "The Eiffel Tower was completed in 1889 [1]."
    assert result["verified"] is True
    assert result["model"] == "fake-moe"
    assert [s["number"] for s in result["sources"]] == [1, 2]
    assert result["sources"][0]["doc_id"] == "eiffel"
    [citation] = result["citations"]
    assert citation | {"lexical": 0, "semantic": 0, "support": 0} == {
        "number": 1,
        "sentence": "The Eiffel Tower was completed in 1889 [1].",
        "valid": True,
        "supported": True,
        "lexical": 0,
        "semantic": 0,
        "doc_id": "eiffel",
        "chunk_id": "eiffel#0",
        "support": 0,
        "origin": "model",
    }
    assert citation["lexical"] == 1.0
    assert citation["support"] >= result["attribution"]["threshold"]
    assert result["sources"][0] | {"text": "", "score": 0, "metadata": {}} == {
        "number": 1,
        "doc_id": "eiffel",
        "chunk_id": "eiffel#0",
        "text": "",
        "score": 0,
        "metadata": {},
        "collection": "kb",
        "title": "Eiffel Tower",
    }
    # The model saw the numbered sources and the question.
    [prompt] = asked(moe)
    assert "[1] Eiffel Tower\nThe Eiffel Tower is a wrought-iron" in prompt
    assert "Question: When was the Eiffel Tower completed?" in prompt


REPLY_WITH_INVENTIONS = (
    "The Eiffel Tower was completed in 1889 [1]. "
    "It is made of chocolate and stands on the Moon [2]. "
    "Penguins invented the telephone [7]."
)


def test_unsupported_sentences_are_dropped_and_unknown_citations_removed(
    rag: RunningServer, moe: RunningServer
) -> None:
    script(moe, {"contains": "Sources:", "reply": REPLY_WITH_INVENTIONS})

    result = answer(rag, question="When was the Eiffel Tower completed?", k=2)

    assert result["answer"] == "The Eiffel Tower was completed in 1889 [1]."
    assert result["verified"] is False  # the model wrote sentences no source supports
    assert [(c["number"], c["supported"]) for c in result["citations"]] == [(1, True)]
    attribution = result["attribution"]
    assert attribution["unsupported"] == "dropped"
    assert [s["supported"] for s in attribution["sentences"]] == [True, False, False]
    assert attribution["removed"] == [2, 7]


def test_unsupported_sentences_can_be_kept_and_flagged(
    rag: RunningServer, moe: RunningServer
) -> None:
    script(moe, {"contains": "Sources:", "reply": REPLY_WITH_INVENTIONS})

    result = answer(rag, question="When was the Eiffel Tower completed?", k=2, unsupported="flag")

    assert result["answer"] == (
        "The Eiffel Tower was completed in 1889 [1]. "
        "It is made of chocolate and stands on the Moon. Penguins invented the telephone."
    )
    assert result["attribution"]["unsupported"] == "flagged"
    assert [c["number"] for c in result["citations"]] == [1]


def test_an_answer_without_markers_is_cited_after_generation(
    rag: RunningServer, moe: RunningServer
) -> None:
    script(moe, {"contains": "Sources:", "reply": "Gustave Eiffel was born in Dijon."})

    result = answer(rag, question="Where was Gustave Eiffel born?", k=3)

    cited = next(s["number"] for s in result["sources"] if s["doc_id"] == "gustave")
    assert result["answer"] == f"Gustave Eiffel was born in Dijon [{cited}]."
    [citation] = result["citations"]
    assert (citation["origin"], citation["doc_id"]) == ("attributed", "gustave")
    assert result["verified"] is True


def test_hyde_retrieves_with_a_hypothetical_answer(rag: RunningServer, moe: RunningServer) -> None:
    passage = "Alpine glaciers melted at a record rate, losing metres of ice thickness."
    script(
        moe,
        {"contains": "Write a short passage", "reply": passage},
        {"contains": "Sources:", "reply": "I do not know."},
    )
    question = "What did the report published last winter find?"
    options = {"question": question, "k": 1, "mode": "dense", "rerank": False}

    plain = answer(rag, **options)
    hyde = answer(rag, **options, hyde=True)

    assert plain["sources"][0]["doc_id"] == "budget-report"
    assert plain["retrieval"]["hyde_passage"] is None
    assert hyde["sources"][0]["doc_id"] == "glaciers"
    assert hyde["retrieval"]["hyde_passage"] == passage
    assert any("Write a short passage" in p and question in p for p in asked(moe))


def test_multi_hop_retrieves_for_each_sub_question(rag: RunningServer, moe: RunningServer) -> None:
    script(
        moe,
        {
            "contains": "Break the question",
            "reply": "1. Where was Gustave Eiffel born?\n2. Which river flows through Dijon?",
        },
        {"contains": "Sources:", "reply": "The Ouche [1][2]."},
    )
    question = "Which river flows through the birthplace of the Eiffel Tower's engineer?"

    single = answer(rag, question=question, k=1)
    multi = answer(rag, question=question, k=1, multi_hop=True)

    assert multi["retrieval"]["sub_questions"] == [
        "Where was Gustave Eiffel born?",
        "Which river flows through Dijon?",
    ]
    assert multi["retrieval"]["queries"] == [question, *multi["retrieval"]["sub_questions"]]
    assert {"gustave", "dijon"} <= {s["doc_id"] for s in multi["sources"]}
    assert len(single["sources"]) == 1
    answer_prompt = asked(moe)[-1]
    assert "born in Dijon" in answer_prompt and "Ouche river" in answer_prompt


def test_self_rag_skips_retrieval_when_none_is_needed(
    rag: RunningServer, moe: RunningServer
) -> None:
    script(
        moe,
        {"contains": "Sources:", "reply": "The Eiffel Tower was completed in 1889 [1]."},
        {"contains": "Hello", "reply": "Hello! How can I help?"},
    )

    greeting = answer(rag, question="Hello there!", self_rag=True)
    factual = answer(rag, question="When was the Eiffel Tower completed?", self_rag=True)

    assert greeting["answer"] == "Hello! How can I help?"
    assert greeting["retrieval"]["used"] is False
    assert "small talk" in greeting["retrieval"]["reason"]
    assert (greeting["sources"], greeting["citations"], greeting["verified"]) == ([], [], False)
    assert factual["retrieval"]["used"] is True
    assert factual["verified"] is True
    # Self-RAG's relevance critique dropped the sources the reranker judged irrelevant.
    kept = [s["doc_id"] for s in factual["sources"]]
    assert kept[0] == "eiffel"
    assert not {"glaciers", "budget-report"} & set(kept)
    assert factual["retrieval"]["reason"] == f"dropped {5 - len(kept)} irrelevant source(s)"
    prompts = asked(moe)
    assert "Sources:" not in prompts[0] and "Sources:" in prompts[1]


def test_moe_failure_reaches_the_caller(rag: RunningServer, moe: RunningServer) -> None:
    script(moe, {"contains": "Sources:", "status": 503})

    response = httpx.post(
        f"{rag.url}/v1/collections/kb/answer", json={"question": "Eiffel Tower?"}, timeout=60
    )

    assert response.status_code == 503
    assert response.json()["error"]["service"] == "moe_svc"
