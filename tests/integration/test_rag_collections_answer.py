"""Search and answers over several collections: the shared wiki and a tenant's own, fused into
one ranking, each source naming its collection; a collection the caller may not read is 404."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.caller import DEFAULT_MEMBER_SCOPES, Caller
from tests.helpers.servers import RunningServer
from tests.integration.rag_support import start_fake_moe, start_rag

pytestmark = pytest.mark.integration

SHARED = [
    {
        "id": "wiki-angola",
        "text": "Angola is a country in Southern Africa. The capital and largest city of "
        "Angola is Luanda.",
        "metadata": {"title": "Angola"},
    },
    {
        "id": "wiki-orwell",
        "text": "Animal Farm is a novella by George Orwell, first published in 1945.",
        "metadata": {"title": "Animal Farm"},
    },
]
OWN = [
    {
        "id": "handbook",
        "text": "Our office in Luanda opens at nine. Visitors sign in at the front desk.",
        "metadata": {"title": "Office handbook"},
    }
]


def caller(tenant: str) -> dict[str, str]:
    scopes = frozenset(DEFAULT_MEMBER_SCOPES)
    return Caller(tenant=tenant, role="member", scopes=scopes).headers()


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_fake_moe(tmp_path_factory.mktemp("fake_moe"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory, moe: RunningServer) -> Iterator[RunningServer]:
    server = start_rag(tmp_path_factory.mktemp("rag"), upstreams={"moe_svc": moe.url})
    with httpx.Client(base_url=server.url, timeout=60) as platform:
        # No caller headers: the platform itself (an admin) makes the shared collection.
        created = platform.post("/v1/collections", json={"name": "wiki", "shared": True})
        assert created.status_code == 201, created.text
        platform.post("/v1/collections/wiki/documents", json={"documents": SHARED})
    with httpx.Client(base_url=server.url, timeout=60, headers=caller("acme")) as acme:
        assert acme.post("/v1/collections/docs/documents", json={"documents": OWN}).is_success
    yield server
    server.stop()


def post(rag: RunningServer, path: str, tenant: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{rag.url}{path}", json=body, headers=caller(tenant), timeout=120)


def test_search_fuses_the_wiki_and_the_callers_own_collection(rag: RunningServer) -> None:
    response = post(rag, "/v1/search", "acme", query="Luanda", k=3)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert {(r["collection"], r["doc_id"]) for r in results} >= {
        ("wiki", "wiki-angola"),
        ("docs", "handbook"),
    }
    assert all("rerank" in r["scores"] and "fused_rrf" in r["scores"] for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_the_request_picks_the_collections(rag: RunningServer) -> None:
    only_wiki = post(rag, "/v1/search", "acme", query="Luanda", k=3, collections=["wiki"])

    assert {r["collection"] for r in only_wiki.json()["results"]} == {"wiki"}


def test_another_tenants_collection_is_not_searched(rag: RunningServer) -> None:
    # `globex` has its own (empty) docs and the shared wiki; acme's handbook is not its own.
    results = post(rag, "/v1/search", "globex", query="office Luanda", k=5).json()["results"]

    assert {r["collection"] for r in results} == {"wiki"}


@pytest.mark.parametrize(
    ("collections", "status"), [(["nope"], 404), (["wiki", "wiki"], 400), ([], 400)]
)
def test_unknown_or_malformed_collections_are_refused(
    rag: RunningServer, collections: list[str], status: int
) -> None:
    response = post(rag, "/v1/answer", "acme", question="Capital?", collections=collections)

    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_an_answer_cites_sources_from_every_collection(
    rag: RunningServer, moe: RunningServer
) -> None:
    reply = "The capital of Angola is Luanda. The office in Luanda opens at nine."
    assert httpx.put(
        f"{moe.url}/script", json=[{"contains": "Sources:", "reply": reply}]
    ).is_success

    response = post(rag, "/v1/answer", "acme", question="What is the capital of Angola?", k=3)

    assert response.status_code == 200, response.text
    body = response.json()
    by_number = {s["number"]: s for s in body["sources"]}
    cited = {(by_number[c["number"]]["collection"], c["doc_id"]) for c in body["citations"]}
    assert cited == {("wiki", "wiki-angola"), ("docs", "handbook")}
    assert all(c["origin"] == "attributed" for c in body["citations"])
    assert body["verified"] is True
    assert {s["title"] for s in body["sources"]} >= {"Angola", "Office handbook"}
