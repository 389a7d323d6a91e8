"""Cited answers written by the real core model (moe_svc on the default model).

The default model is small: the test checks the contract end to end (retrieval,
numbered sources, the model's answer, the verification report), not its prose.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.rag_support import start_rag

pytestmark = pytest.mark.integration

DOCUMENTS = [
    {
        "id": "bell",
        "text": "Alexander Graham Bell was granted the first US patent for the telephone "
        "on 7 March 1876.",
        "metadata": {"title": "Telephone"},
    },
    {
        "id": "eiffel",
        "text": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
        "metadata": {"title": "Eiffel Tower"},
    },
]


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_dir = tmp_path_factory.mktemp("rag_moe")
    moe = start_service("moe_svc", log_dir, env={"MOE_DATA_DIR": str(REPO_ROOT / "var")})
    try:
        wait_ready(moe, timeout_s=600)  # first run: the default model's build (~1 min)
        server = start_rag(log_dir, upstreams={"moe_svc": moe.url})
        try:
            httpx.post(f"{server.url}/v1/collections", json={"name": "facts"}, timeout=30)
            httpx.post(
                f"{server.url}/v1/collections/facts/documents",
                json={"documents": DOCUMENTS},
                timeout=120,
            ).raise_for_status()
            yield server
        finally:
            server.stop()
    finally:
        moe.stop()


def test_the_core_model_answers_from_numbered_sources(rag: RunningServer) -> None:
    response = httpx.post(
        f"{rag.url}/v1/collections/facts/answer",
        json={"question": "When was the telephone patented?", "k": 2, "max_tokens": 64},
        timeout=300,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip()
    assert body["model"] == "smollm2-135m-moe-8x"
    # The most relevant passage is source [1]; a citation is valid exactly when it names
    # a given source, and the answer is verified only when every citation is supported.
    assert body["sources"][0]["doc_id"] == "bell"
    numbers = {s["number"] for s in body["sources"]}
    assert all(c["valid"] == (c["number"] in numbers) for c in body["citations"])
    supported = all(c["valid"] and c["supported"] for c in body["citations"])
    assert body["verified"] == (bool(body["citations"]) and supported)
