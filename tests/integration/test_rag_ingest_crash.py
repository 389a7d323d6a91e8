"""An acknowledged ingest survives `kill -9` of rag_svc; the collection stays readable."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.rag_support import start_rag

pytestmark = pytest.mark.integration

WORDS = [
    "harbour",
    "lantern",
    "meadow",
    "glacier",
    "orchard",
    "violin",
    "canyon",
    "falcon",
    "quarry",
    "saddle",
    "compass",
    "ember",
    "thicket",
    "lagoon",
    "beacon",
    "pewter",
    "marble",
    "willow",
    "tundra",
    "cobalt",
    "pepper",
    "saffron",
    "granite",
    "walnut",
    "citadel",
    "fresco",
    "anchor",
    "turbine",
    "kestrel",
    "basalt",
]
BATCH = 16  # documents per ingest request


def note(number: int) -> dict[str, str]:
    """A short document of its own words, so no two are near-duplicates."""
    rng = random.Random(number)
    words = " ".join(rng.choice(WORDS) for _ in range(30))
    return {"id": f"note-{number}", "text": f"Note {number} records {words}."}


def test_kill_9_during_ingests_loses_no_acknowledged_document(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_rag(tmp_path / "run1", data_dir=data_dir)
    acknowledged: list[str] = []
    in_flight = threading.Event()
    stop = threading.Event()

    def ingest_until_killed(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for batch in range(worker, 10_000, 2):
                if stop.is_set():
                    return
                documents = [note(batch * BATCH + i) for i in range(BATCH)]
                in_flight.set()
                try:
                    response = client.post(
                        "/v1/collections/crash/documents", json={"documents": documents}
                    )
                except httpx.HTTPError:
                    return  # killed mid-request: this batch was never acknowledged
                assert response.status_code == 200, response.text
                acknowledged.extend(response.json()["ids"])

    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/v1/collections", json={"name": "crash"}).status_code == 201
        writers = [threading.Thread(target=ingest_until_killed, args=(w,)) for w in range(2)]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 3 * BATCH and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_flight.wait(5)
        # Both writers keep a request open: the kill lands in the middle of an ingest.
        time.sleep(random.Random(0).uniform(0.05, 0.3))
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        stop.set()
        for writer in writers:
            writer.join(60)
    finally:
        server.stop()
    assert len(acknowledged) >= 3 * BATCH

    restarted = start_rag(tmp_path / "run2", data_dir=data_dir)
    try:
        with httpx.Client(base_url=restarted.url, timeout=60) as client:
            info = client.get("/v1/collections/crash").json()
            # Every acknowledged document is back; an unacknowledged batch is all or nothing.
            assert info["documents"] >= len(acknowledged)
            assert (info["documents"] - len(acknowledged)) % BATCH == 0
            for number in random.Random(1).sample(range(len(acknowledged)), 20):
                document_id = acknowledged[number]
                stored = client.get(f"/v1/collections/crash/documents/{document_id}")
                assert stored.status_code == 200
                assert stored.json()["text"] == note(int(document_id.split("-")[1]))["text"]
            last = note(int(acknowledged[-1].split("-")[1]))
            body = {"query": last["text"], "k": 1, "mode": "bm25"}
            hits = client.post("/v1/collections/crash/search", json=body).json()["results"]
            assert hits[0]["doc_id"] == last["id"]
            # The collection takes new documents after the crash.
            fresh = {"documents": [{"id": "after", "text": "Written after the restart, kiwi."}]}
            assert client.post("/v1/collections/crash/documents", json=fresh).status_code == 200
            body = {"query": "kiwi restart", "k": 1, "mode": "bm25"}
            hits = client.post("/v1/collections/crash/search", json=body).json()["results"]
            assert hits[0]["doc_id"] == "after"
    finally:
        restarted.stop()
