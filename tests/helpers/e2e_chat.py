"""What the end-to-end modules ask of a launched platform through its gateway: an
`openai` client, the telephone document in the caller's `docs` collection, and a
question to `auto` in a session."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.helpers.platform import Launch

__all__ = ["BELL", "QUESTIONS", "ask_auto", "ingest_bell", "openai_client"]

BELL = (
    "Alexander Graham Bell was granted the first US patent for the telephone on 7 March 1876. "
    "Elisha Gray filed a caveat for a similar device on the same day."
)

# A question of each intent (the factual one about BELL): (question, intent, the services
# its pipeline must show, text the answer must contain with the default model)
QUESTIONS: list[tuple[str, str, set[str], str]] = [
    ("Who was granted the patent for the telephone?", "factual", {"rag_svc"}, "Bell"),
    (
        "A farmer has 30 heads and 74 legs among his chickens and cows. How many cows?",
        "reasoning",
        {"reasoning_svc"},
        "",
    ),
    ("Write a short poem about the sea", "creative", {"moe_svc"}, ""),
    ("Convert 72 F to C", "tool", {"tools_svc"}, "22.2"),
    ("Hi! How are you today?", "chat", {"memory_svc", "moe_svc"}, ""),
]


def openai_client(launch: Launch, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{launch.gateway}/v1", api_key=key, max_retries=0, timeout=600)


def ingest_bell(launch: Launch, key: str) -> None:
    documents = {"documents": [{"id": "bell", "text": BELL, "metadata": {"title": "Telephone"}}]}
    response = httpx.post(
        f"{launch.gateway}/v1/collections/docs/documents",
        json=documents,
        headers={"Authorization": f"Bearer {key}"},
        timeout=300,
    )
    assert response.status_code == 200, response.text


def ask_auto(client: openai.OpenAI, text: str, session_id: str, **extra: Any) -> Any:
    """One user turn to `auto` in `session_id` (48 tokens at most)."""
    return client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        max_tokens=48,
        extra_body={"session_id": session_id},
        **extra,
    )
