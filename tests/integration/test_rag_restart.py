"""Collections survive a restart, the first version's layout included; `wiki` is built once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from common.caller import DEFAULT_MEMBER_SCOPES, Caller
from tests.integration.rag_support import start_rag

pytestmark = pytest.mark.integration

# A small wiki keeps the first start short; the build is the same at any size.
WIKI_ENV = {
    "RAG_WIKI_ENABLED": "true",
    "RAG_WIKI_MAX_PAGES": "2",
    "RAG_WIKI_MAX_CHARS_PER_PAGE": "3000",
}
NOTES = [
    {
        "id": "kiwi",
        "text": "The kiwi is a flightless bird endemic to New Zealand.",
        "metadata": {"kind": "bird"},
    },
    {
        "id": "ostrich",
        "text": "The ostrich is the largest living bird and lays the largest eggs.",
        "metadata": {"kind": "bird"},
    },
    {
        "id": "salmon",
        "text": "Salmon swim upstream from the ocean to spawn in rivers.",
        "metadata": {"kind": "fish"},
    },
]
QUERIES = ["flightless bird", "largest eggs", "fish spawning in rivers", "anarchism"]


def snapshot(client: httpx.Client) -> dict[str, object]:
    """What a user sees: collections, documents, and search results with their scores."""
    collections = client.get("/v1/collections").json()["data"]
    results = {}
    for name in ("notes", "wiki"):
        for mode in ("hybrid", "bm25", "dense"):
            for query in QUERIES:
                body = {"query": query, "k": 3, "mode": mode}
                hits = client.post(f"/v1/collections/{name}/search", json=body).json()["results"]
                results[name, mode, query] = [(h["chunk_id"], h["score"]) for h in hits]
    return {"collections": collections, "results": results}


def test_collections_and_wiki_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_rag(tmp_path / "run1", env=WIKI_ENV, data_dir=data_dir)
    try:
        ready = httpx.get(f"{first.url}/readyz").json()
        assert ready["checks"]["wiki"]["status"] == "up"
        with httpx.Client(base_url=first.url, timeout=60) as client:
            wiki = client.get("/v1/collections/wiki").json()
            assert wiki["documents"] == 2 and wiki["chunks"] > 2
            assert wiki["shared"] is True  # the platform's knowledge: every tenant reads it
            top = client.post(
                "/v1/collections/wiki/search", json={"query": "What is anarchism?", "k": 1}
            ).json()["results"][0]
            assert top["metadata"]["title"] == "Anarchism"
            assert top["metadata"]["url"] == "https://en.wikipedia.org/wiki/Anarchism"
            assert "{{" not in top["text"] and "[[" not in top["text"]

            assert client.post("/v1/collections", json={"name": "notes"}).status_code == 201
            client.post("/v1/collections/notes/documents", json={"documents": NOTES})
            assert client.delete("/v1/collections/notes/documents/ostrich").status_code == 200
            client.post("/v1/collections", json={"name": "scratch"})
            assert client.delete("/v1/collections/scratch").status_code == 200
            before = snapshot(client)
    finally:
        first.stop()
    assert "wiki built" in first.logs()

    # The first version kept every collection in rag/collections/<name>: put them back there
    # (the files are the same), so the next start must migrate them with their ownership.
    rag_dir = data_dir / "rag"
    first_version = rag_dir / "collections"
    first_version.mkdir()
    for namespace in ("tenants/default", "shared"):
        for directory in (rag_dir / namespace).iterdir():
            directory.rename(first_version / directory.name)
    # Leftovers of a commit interrupted by a crash must not confuse the next start.
    notes_dir = first_version / "notes"
    (notes_dir / "gen-99999999.tmp-deadbeef").mkdir()
    (notes_dir / "gen-99999999.tmp-deadbeef" / "vectors.npy").write_bytes(b"\x93NUMPY half")

    second = start_rag(tmp_path / "run2", env=WIKI_ENV, data_dir=data_dir)
    try:
        with httpx.Client(base_url=second.url, timeout=60) as client:
            after = snapshot(client)
            assert client.get("/v1/collections/notes/documents/kiwi").json()["metadata"] == {
                "kind": "bird"
            }
            assert client.get("/v1/collections/notes/documents/ostrich").status_code == 404
        # Another tenant's member reads the migrated wiki, cannot change it, never sees notes.
        member = Caller("acme", role="member", scopes=frozenset(DEFAULT_MEMBER_SCOPES))
        with httpx.Client(base_url=second.url, timeout=60, headers=member.headers()) as acme:
            body = {"query": "What is anarchism?", "k": 1}
            assert acme.post("/v1/collections/wiki/search", json=body).status_code == 200
            page = {"documents": [{"id": "wiki-x", "text": "Vandalism."}]}
            assert acme.post("/v1/collections/wiki/documents", json=page).status_code == 403
            assert acme.get("/v1/collections/notes").status_code == 404
    finally:
        second.stop()

    assert after == before
    collections = after["collections"]
    assert isinstance(collections, list)
    names = [c["name"] for c in collections]
    # docs: created empty at start (RAG_DEFAULT_COLLECTIONS)
    assert names == ["docs", "notes", "wiki"]
    assert "wiki built" not in second.logs()
    # wiki stays shared; the other collections become tenant default's own.
    assert sorted(p.name for p in (rag_dir / "tenants" / "default").iterdir()) == ["docs", "notes"]
    assert [p.name for p in (rag_dir / "shared").iterdir()] == ["wiki"]
    assert not first_version.exists()
    assert not (rag_dir / "tenants/default/notes/gen-99999999.tmp-deadbeef").exists()
