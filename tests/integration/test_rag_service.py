"""rag_svc as a real process: embeddings, collections, ingestion, search, bad input."""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers.servers import RunningServer
from tests.integration.rag_support import minimal_pdf, start_rag

pytestmark = pytest.mark.integration

MAX_UPLOAD = 50_000
_names = itertools.count()

DOCS: list[dict[str, Any]] = [
    {
        "id": "eiffel",
        "text": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in "
        "Paris. It was designed by Gustave Eiffel's company and completed in 1889 for the "
        "World's Fair.",
        "metadata": {"title": "Eiffel Tower", "lang": "en", "year": 1889, "tags": ["paris"]},
    },
    {
        "id": "banana",
        "text": "Bananas are elongated, edible fruits produced by large herbaceous flowering "
        "plants of the genus Musa. They are rich in potassium.",
        "metadata": {"title": "Banana", "lang": "en", "year": 2001, "tags": ["food"]},
    },
    {
        "id": "rhine",
        "text": "Der Rhein ist ein Fluss in Mitteleuropa. Er entspringt in den Alpen der "
        "Schweiz und mündet in die Nordsee.",
        "metadata": {"title": "Rhein", "lang": "de", "year": 1950, "tags": ["river"]},
    },
]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_rag(
        tmp_path_factory.mktemp("rag"), env={"RAG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}
    )
    yield server
    server.stop()


@pytest.fixture
def client(rag: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rag.url, timeout=60) as c:
        yield c


def new_collection(client: httpx.Client, docs: list[dict[str, Any]] | None = None) -> str:
    name = f"c{next(_names)}"
    assert client.post("/v1/collections", json={"name": name}).status_code == 201
    if docs:
        response = client.post(f"/v1/collections/{name}/documents", json={"documents": docs})
        assert response.status_code == 200, response.text
    return name


def search(client: httpx.Client, name: str, query: str, **options: Any) -> list[dict[str, Any]]:
    response = client.post(f"/v1/collections/{name}/search", json={"query": query, **options})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["service"] == "rag_svc"
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


# --- embeddings -----------------------------------------------------------------------


def test_embeddings_are_openai_shaped_and_normalised(client: httpx.Client) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell today."]
    body = client.post("/v1/embeddings", json={"input": texts}).json()

    assert body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Paraphrases are closer than unrelated sentences.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_embeddings_base64_matches_floats(client: httpx.Client) -> None:
    as_float = client.post("/v1/embeddings", json={"input": "hello world"}).json()
    as_b64 = client.post(
        "/v1/embeddings", json={"input": "hello world", "encoding_format": "base64"}
    ).json()

    decoded = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_float["data"][0]["embedding"], atol=1e-6)


def test_embeddings_bad_input(client: httpx.Client) -> None:
    assert_error(client.post("/v1/embeddings", json={"input": ""}), 400, "input")
    assert_error(client.post("/v1/embeddings", json={"input": []}), 400, "input")
    error = assert_error(
        client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"}),
        404,
        "model",
    )
    assert error["code"] == "model_not_found"
    assert_error(
        client.post("/v1/embeddings", json={"input": "x", "dimensions": 1536}), 400, "dimensions"
    )


# --- collections ----------------------------------------------------------------------


def test_collection_lifecycle(client: httpx.Client) -> None:
    name = new_collection(client)
    assert_error(client.post("/v1/collections", json={"name": name}), 409, "name")
    assert_error(client.post("/v1/collections", json={"name": "../etc"}), 400, "name")
    listed = client.get("/v1/collections").json()["data"]
    assert {"name": name, "documents": 0, "chunks": 0}.items() <= next(
        c for c in listed if c["name"] == name
    ).items()

    assert client.delete(f"/v1/collections/{name}").json() == {
        "id": name,
        "object": "collection",
        "deleted": True,
    }
    assert_error(client.get(f"/v1/collections/{name}"), 404)
    assert name not in [c["name"] for c in client.get("/v1/collections").json()["data"]]


# --- ingestion and search -------------------------------------------------------------


def test_ingest_and_search_every_mode(client: httpx.Client) -> None:
    name = new_collection(client)
    response = client.post(f"/v1/collections/{name}/documents", json={"documents": DOCS})
    assert response.json() == {
        "ids": ["eiffel", "banana", "rhine"],
        "chunks": 3,
        "duplicates": [],
        "redactions": 0,
    }
    for mode in ("hybrid", "dense", "bm25"):
        for rerank in (True, False):
            query = "When was the Eiffel Tower finished?"
            results = search(client, name, query, k=2, mode=mode, rerank=rerank)
            assert results[0]["doc_id"] == "eiffel", (mode, rerank)
            assert results[0]["metadata"]["title"] == "Eiffel Tower"
            assert results[0]["chunk_id"] == "eiffel#0"
    # Dense retrieval finds a paraphrase with no word in common.
    assert search(client, name, "yellow tropical fruit", mode="dense", k=1)[0]["doc_id"] == "banana"
    reranked = search(client, name, "potassium-rich fruit", k=3)
    assert all(0.0 <= r["score"] <= 1.0 for r in reranked)
    assert reranked[0]["scores"]["rerank"] == reranked[0]["score"]
    assert {"dense", "rrf"} <= reranked[0]["scores"].keys()


def test_metadata_filters(client: httpx.Client) -> None:
    name = new_collection(client, DOCS)
    query = "tower river fruit"

    def ids(flt: dict[str, Any]) -> set[str]:
        return {r["doc_id"] for r in search(client, name, query, k=10, filter=flt)}

    assert ids({"lang": "de"}) == {"rhine"}
    assert ids({"lang": ["en"], "year": {"$gte": 2000}}) == {"banana"}
    assert ids({"year": {"$lt": 1960, "$ne": 1889}}) == {"rhine"}
    assert ids({"tags": "paris"}) == {"eiffel"}
    assert ids({"doc_id": {"$nin": ["eiffel", "banana"]}}) == {"rhine"}
    assert ids({"lang": "fr"}) == set()
    assert_error(
        client.post(
            f"/v1/collections/{name}/search",
            json={"query": "x", "filter": {"year": {"$near": 3}}},
        ),
        400,
        "filter",
    )


def test_file_uploads_txt_md_html_pdf(client: httpx.Client) -> None:
    name = new_collection(client)
    files = {
        "notes.txt": (b"Plain text about the Andromeda galaxy and its spiral arms.", "text/plain"),
        "guide.md": (
            b"# Sourdough Guide\n\nFeed the **starter** with [flour](http://x.test) daily.",
            "text/markdown",
        ),
        "page.html": (
            b"<html><head><title>Volcano Facts</title><script>var lava = 1;</script></head>"
            b"<body><h1>Volcanoes</h1><p>Mount Etna erupts often.</p></body></html>",
            "text/html",
        ),
        "paper.pdf": (minimal_pdf(["Glaciers carve fjords in Norway."]), "application/pdf"),
    }
    for filename, (content, media_type) in files.items():
        response = client.post(
            f"/v1/collections/{name}/documents",
            files={"file": (filename, content, media_type)},
            data={"metadata": '{"owner": "tests"}'},
        )
        assert response.status_code == 200, response.text
        assert response.json()["ids"] == [filename]

    md = client.get(f"/v1/collections/{name}/documents/guide.md").json()
    assert md["text"] == "Sourdough Guide\n\nFeed the starter with flour daily."
    assert md["metadata"] == {
        "source": "guide.md",
        "content_type": "md",
        "title": "Sourdough Guide",
        "owner": "tests",
    }
    html = client.get(f"/v1/collections/{name}/documents/page.html").json()
    assert "lava" not in html["text"] and "Mount Etna erupts often." in html["text"]
    assert html["metadata"]["title"] == "Volcano Facts"
    assert search(client, name, "fjords glaciers", k=1)[0]["doc_id"] == "paper.pdf"
    assert search(client, name, "Andromeda", k=1, mode="bm25")[0]["doc_id"] == "notes.txt"


def test_near_duplicates_are_reported_not_indexed(client: httpx.Client) -> None:
    name = new_collection(client, DOCS)
    copy = {**DOCS[0], "id": "eiffel-copy", "text": DOCS[0]["text"] + " "}
    response = client.post(f"/v1/collections/{name}/documents", json={"documents": [copy]})

    assert response.json()["ids"] == []
    assert response.json()["duplicates"] == [
        {"id": "eiffel-copy", "duplicate_of": "eiffel", "similarity": 1.0}
    ]
    assert_error(client.get(f"/v1/collections/{name}/documents/eiffel-copy"), 404)
    assert client.get(f"/v1/collections/{name}").json()["documents"] == 3


def test_reingesting_an_id_replaces_it(client: httpx.Client) -> None:
    name = new_collection(client, DOCS)
    new = {"id": "banana", "text": "Plantains are starchy cooking bananas from West Africa."}
    response = client.post(f"/v1/collections/{name}/documents", json={"documents": [new]})

    assert response.json()["ids"] == ["banana"]
    assert client.get(f"/v1/collections/{name}").json()["documents"] == 3
    assert client.get(f"/v1/collections/{name}/documents/banana").json()["text"] == new["text"]
    assert search(client, name, "potassium", mode="bm25") == []


def test_pii_is_redacted_on_request(client: httpx.Client) -> None:
    name = new_collection(client)
    text = "Write to jane.roe@example.org, call +44 20 7946 0958, card 4111 1111 1111 1111."
    response = client.post(
        f"/v1/collections/{name}/documents",
        json={"documents": [{"id": "pii", "text": text}], "redact_pii": True},
    )

    assert response.json()["redactions"] == 3
    stored = client.get(f"/v1/collections/{name}/documents/pii").json()["text"]
    assert stored == "Write to [EMAIL], call [PHONE], card [CARD]."
    assert all("jane" not in r["text"] for r in search(client, name, "jane roe example", k=5))


def test_delete_document_removes_it_from_every_index(client: httpx.Client) -> None:
    name = new_collection(client, DOCS)
    assert client.delete(f"/v1/collections/{name}/documents/eiffel").json() == {
        "id": "eiffel",
        "object": "document",
        "deleted": True,
    }

    for mode in ("dense", "bm25", "hybrid"):
        hits = search(client, name, "Eiffel Tower", mode=mode, k=10)
        assert "eiffel" not in {r["doc_id"] for r in hits}
    assert_error(client.get(f"/v1/collections/{name}/documents/eiffel"), 404)
    assert_error(client.delete(f"/v1/collections/{name}/documents/eiffel"), 404)
    assert client.get(f"/v1/collections/{name}").json() | {"created_at": 0} == {
        "name": name,
        "documents": 2,
        "chunks": 2,
        "index": "flat",
        "created_at": 0,
        "metadata": {},
        "shared": False,
    }


# --- bad input ------------------------------------------------------------------------


def test_bad_input_gets_clear_4xx_and_leaves_data_intact(client: httpx.Client) -> None:
    name = new_collection(client, DOCS)
    before = client.get(f"/v1/collections/{name}").json()
    docs_url = f"/v1/collections/{name}/documents"

    assert_error(
        client.post(docs_url, json={"documents": [{"text": "   "}]}), 400, "documents.0.text"
    )
    assert_error(client.post(docs_url, json={"documents": []}), 400, "documents")
    assert_error(
        client.post(docs_url, json={"documents": [DOCS[0], {"id": "ok", "text": ""}]}),
        400,
        "documents.1.text",
    )
    json_type = {"content-type": "application/json"}
    assert_error(client.post(docs_url, content=b"{not json", headers=json_type), 400)
    unsupported = client.post(docs_url, files={"file": ("tool.exe", b"MZ\x90\x00", "x/bin")})
    assert assert_error(unsupported, 415, "file")["code"] == "unsupported_file_type"
    big = client.post(docs_url, files={"file": ("big.txt", b"word " * MAX_UPLOAD, "text/plain")})
    assert assert_error(big, 413)["code"] == "payload_too_large"
    big_json = client.post(docs_url, json={"documents": [{"text": "word " * 2 * MAX_UPLOAD}]})
    assert_error(big_json, 413)
    junk_pdf = {"file": ("x.pdf", b"%PDF-1.4 junk", "application/pdf")}
    assert_error(client.post(docs_url, files=junk_pdf), 400, "file")
    for k in (0, 51, "many"):
        assert_error(
            client.post(f"/v1/collections/{name}/search", json={"query": "x", "k": k}), 400, "k"
        )
    assert_error(
        client.post(f"/v1/collections/{name}/search", json={"query": " ", "k": 3}), 400, "query"
    )
    assert_error(
        client.post(f"/v1/collections/{name}/search", json={"query": "x", "mode": "fuzzy"}),
        400,
        "mode",
    )
    valid_bodies = {
        "search": {"query": "x"},
        "answer": {"question": "x"},
        "documents": {"documents": [{"text": "x"}]},
    }
    for path, body in valid_bodies.items():
        response = client.post(f"/v1/collections/nope/{path}", json=body)
        assert assert_error(response, 404)["code"] == "collection_not_found"

    after = client.get(f"/v1/collections/{name}").json()
    assert after == before
    assert search(client, name, "Eiffel Tower", k=1)[0]["doc_id"] == "eiffel"


# --- concurrency ----------------------------------------------------------------------


def test_concurrent_ingests_and_searches(rag: RunningServer) -> None:
    with httpx.Client(base_url=rag.url, timeout=120) as client:
        name = new_collection(client, DOCS)
    errors: list[str] = []
    topics = ["astronomy", "cooking", "sailing", "chess", "gardening", "opera"]

    def ingest(worker: int) -> None:
        with httpx.Client(base_url=rag.url, timeout=120) as c:
            for i in range(3):
                doc = {
                    "id": f"w{worker}-{i}",
                    "text": f"Worker {worker} writes note {i} about {topics[worker]}: "
                    f"{topics[worker]} practice number {i * 7 + worker} is special.",
                }
                r = c.post(f"/v1/collections/{name}/documents", json={"documents": [doc]})
                if r.status_code != 200 or r.json()["ids"] != [doc["id"]]:
                    errors.append(f"ingest {doc['id']}: {r.status_code} {r.text}")

    def query(worker: int) -> None:
        with httpx.Client(base_url=rag.url, timeout=120) as c:
            for _ in range(4):
                body = {"query": "Eiffel Tower", "k": 3, "rerank": False}
                r = c.post(f"/v1/collections/{name}/search", json=body)
                if r.status_code != 200 or r.json()["results"][0]["doc_id"] != "eiffel":
                    errors.append(f"search: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=ingest, args=(w,)) for w in range(6)]
    threads += [threading.Thread(target=query, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with httpx.Client(base_url=rag.url, timeout=60) as client:
        info = client.get(f"/v1/collections/{name}").json()
        assert (info["documents"], info["chunks"]) == (3 + 18, 3 + 18)
        for worker, topic in enumerate(topics):
            hits = search(client, name, f"{topic} practice", mode="bm25", k=3)
            assert {h["doc_id"] for h in hits} == {f"w{worker}-{i}" for i in range(3)}
