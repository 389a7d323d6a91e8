"""Factual questions about the default knowledge, asked as a user would: `make up`'s
platform with the real default model, the gateway, model `auto`.

Each question is about a page of the `wiki` collection the platform builds on first
start (here its first pages, tests/e2e/conftest.py), and no document is uploaded:
the answer must come from the shared wiki, which the router searches with the
caller's own collections. Checked per question: the answer is sourced, the page is
among the sources (with its collection), a citation points at that page, and the key
fact is in the answer's text (not only in the source list the gateway appends).
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.helpers.platform import Launch

pytestmark = pytest.mark.e2e

# (question, the wiki page that answers it, text the answer must contain)
QUESTIONS = [
    ("Who wrote Animal Farm?", "Animal Farm", "Orwell"),
    ("When was Animal Farm first published?", "Animal Farm", "1945"),
    ("What is the capital of Alabama?", "Alabama", "Montgomery"),
    ("Where was Abraham Lincoln born?", "Abraham Lincoln", "Kentucky"),
    ("What is the capital of Alaska?", "Alaska", "Juneau"),
    ("From which country did the United States buy Alaska?", "Alaska", "Russia"),
    ("What is the capital of Andorra?", "Andorra", "Andorra la Vella"),
    ("What is the official language of Andorra?", "Andorra", "Catalan"),
    ("What is the capital of Algeria?", "Algeria", "Algiers"),
    ("Which dystopian novel did Aldous Huxley write?", "Aldous Huxley", "Brave New World"),
]


@pytest.fixture(scope="module")
def client(launch: Launch, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{launch.gateway}/v1", api_key=key, max_retries=0, timeout=600)


def _answer_text(content: str) -> str:
    """The answer without the source list the gateway appends (its snippets hold facts too)."""
    return content.split("\n\n**Sources**")[0]


@pytest.mark.parametrize(("question", "page", "fact"), QUESTIONS)
def test_a_factual_question_is_answered_from_the_wiki_and_cited(
    client: openai.OpenAI, question: str, page: str, fact: str
) -> None:
    started = time.perf_counter()
    completion = client.chat.completions.create(
        # Room for a whole sentence: one cut mid-number reads as a claim no page supports.
        model="auto",
        messages=[{"role": "user", "content": question}],
        max_tokens=72,
    )
    print(f"{question!r}: {time.perf_counter() - started:.1f} s")

    pipeline: dict[str, Any] = (completion.model_extra or {})["pipeline"]
    assert pipeline["intent"] == "factual", pipeline["scores"]
    assert pipeline["sourced"] is True, pipeline["notes"]
    sources = {s["number"]: s for s in pipeline["sources"]}
    on_page = {n for n, s in sources.items() if s["title"] == page}
    assert on_page, [s["title"] for s in sources.values()]
    assert all(sources[n]["collection"] == "wiki" for n in on_page)
    cited = {c["number"] for c in pipeline["citations"] if c["supported"]}
    assert cited & on_page, (pipeline["citations"], pipeline["attribution"])
    content = completion.choices[0].message.content or ""
    answer = _answer_text(content)
    assert fact.lower() in answer.lower(), content
    # Every marker in the answer names a source that supports its sentence.
    assert pipeline["verification"]["removed"] == []
