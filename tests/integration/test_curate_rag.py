"""`python -m curate --collection`: a real rag_svc's collection, listed page by page and curated."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import RunningServer
from tests.integration.rag_support import start_rag

pytestmark = pytest.mark.integration

ARTICLE = (
    "The city council said on Tuesday that the new bus routes would start in the spring, "
    "after a year of planning and two rounds of public meetings. Residents of the northern "
    "districts had asked for a direct service to the hospital, and the council agreed to "
    "add one. The cost of the plan will be met from the transport budget, and fares will "
    "not change this year. Questions go to {contact}."
)
FRENCH = (
    "Le conseil municipal a annoncé mardi que les nouvelles lignes de bus seraient mises en "
    "service au printemps, après une année de préparation et deux séries de réunions "
    "publiques avec les habitants des quartiers du nord de la ville."
)


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_rag(tmp_path_factory.mktemp("rag"))
    yield server
    server.stop()


def test_listing_pages_through_every_document_in_id_order(rag: RunningServer) -> None:
    with httpx.Client(base_url=rag.url, timeout=60) as client:
        assert client.post("/v1/collections", json={"name": "paged"}).status_code == 201
        docs = [
            {"id": f"d{i}", "text": f"Document number {i} is about topic {i * 7}."}
            for i in range(5)
        ]
        assert (
            client.post("/v1/collections/paged/documents", json={"documents": docs}).status_code
            == 200
        )
        seen, after = [], None
        while True:
            params = {"limit": 2, **({"after": after} if after else {})}
            page = client.get("/v1/collections/paged/documents", params=params).json()
            seen += [d["id"] for d in page["documents"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert seen == ["d0", "d1", "d2", "d3", "d4"]
        bad = client.get("/v1/collections/paged/documents", params={"limit": 0})
        assert 400 <= bad.status_code < 500 and "error" in bad.json()
        missing = client.get("/v1/collections/nope/documents")
        assert missing.status_code == 404


def test_cli_curates_a_collection(rag: RunningServer, tmp_path: Path) -> None:
    documents = [
        {"id": "bus", "text": ARTICLE.format(contact="transport@council.example.org")},
        {"id": "bus-fr", "text": FRENCH},
        {"id": "short", "text": "Opening hours: see the website."},
    ]
    with httpx.Client(base_url=rag.url, timeout=60) as client:
        assert client.post("/v1/collections", json={"name": "news"}).status_code == 201
        ingest = client.post("/v1/collections/news/documents", json={"documents": documents})
        assert ingest.status_code == 200, ingest.text
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "curate", "--collection", "news", "--rag-url", rag.url]
    subprocess.run(
        [*command, "--out", str(out), "--quiet", "--report", str(tmp_path / "r.json")],
        check=True,
        timeout=120,
    )
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["bus"]
    assert "[EMAIL]" in kept[0]["text"] and "council.example.org" not in kept[0]["text"]
    rejects = {
        r["id"]: r["stage"]
        for r in map(json.loads, Path(f"{out}.rejects.jsonl").read_text().splitlines())
    }
    assert rejects == {"bus-fr": "language", "short": "quality"}
