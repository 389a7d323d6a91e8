"""Long-term memory with its real embedding upstream: rag_svc's all-MiniLM-L6-v2."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import (
    RunningRedis,
    RunningServer,
    start_redis,
    start_service,
    wait_ready,
)
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("memory_rag")


@pytest.fixture(scope="module")
def memory(log_dir: Path) -> Iterator[RunningServer]:
    redis: RunningRedis = start_redis(log_dir / "redis")
    rag = start_service("rag_svc", log_dir, env={"RAG_WIKI_ENABLED": "false"})
    try:
        wait_ready(rag)
        server = start_memory(log_dir, redis.url, rag_url=rag.url)
        yield server
        server.stop()
    finally:
        rag.stop()
        redis.stop()


def add(url: str, uid: str, text: str) -> dict[str, object]:
    response = httpx.post(f"{url}/v1/users/{uid}/memories", json={"text": text}, timeout=60)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_real_embeddings_merge_restatements_and_rank_by_meaning(memory: RunningServer) -> None:
    uid = f"u-{uuid.uuid4().hex[:12]}"
    first = add(memory.url, uid, "The user's favourite colour is green")
    again = add(memory.url, uid, "the user's favourite colour is green.")
    assert first["event"] == "added"
    assert again["event"] in {"unchanged", "merged"}
    add(memory.url, uid, "The user works as a nurse at the city hospital")
    add(memory.url, uid, "The user has a dog called Biscuit")

    listed = httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()
    assert listed["total"] == 3

    found = httpx.post(
        f"{memory.url}/v1/users/{uid}/memories/search",
        json={"query": "What pet does the user own?", "k": 3},
        timeout=60,
    )
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results[0]["text"] == "The user has a dog called Biscuit"
    assert results[0]["score"] > results[-1]["score"]
