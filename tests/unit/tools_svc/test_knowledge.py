"""knowledge_search against a fake rag_svc (httpx.MockTransport behind the shared client)."""

from __future__ import annotations

import json

import httpx

from common.http_client import ServiceClient
from common.retry import RetryPolicy
from common.upstreams import Upstreams
from tests.helpers.tools_fakes import AppClient, AppFactory
from tools_svc.settings import ToolsSettings


class FakeRag:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        query = json.loads(request.content)
        if "missing" in query.get("collections", []):
            error = {
                "message": "No collection named 'missing'.",
                "type": "not_found_error",
                "param": None,
                "code": "collection_not_found",
                "service": "rag_svc",
                "request_id": request.headers["x-request-id"],
            }
            return httpx.Response(404, json={"error": error})
        hits = [
            {
                "doc_id": f"doc-{i}",
                "chunk_id": f"doc-{i}:0",
                "text": f"passage {i} about {query['query']}",
                "score": 1.0 - i / 10,
                "metadata": {"source": "test"},
                "collection": (query.get("collections") or ["wiki"])[0],
            }
            for i in range(query["k"])
        ]
        return httpx.Response(200, json={"results": hits})


async def start_with_fake_rag(settings: ToolsSettings, client: AppClient, rag: FakeRag) -> None:
    fake = ServiceClient(
        "rag_svc",
        "http://rag",
        transport=httpx.MockTransport(rag),
        retry=RetryPolicy(max_retries=0),
    )
    client.app.state.upstreams = Upstreams({"rag_svc": fake})


async def test_search_calls_rag_with_the_contract(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    rag = FakeRag()
    async with app_client(settings) as client:
        await start_with_fake_rag(settings, client, rag)
        response = await client.post(
            "/v1/tools/knowledge_search/invoke",
            json={"arguments": {"query": "telephone", "collection": "wiki", "k": 2}},
            headers={"X-Request-ID": "ks-1"},
        )

    assert response.status_code == 200
    output = response.json()["output"]
    assert output["collection"] == "wiki"
    assert [r["doc_id"] for r in output["results"]] == ["doc-0", "doc-1"]
    assert output["results"][0]["text"] == "passage 0 about telephone"
    (request,) = rag.requests
    assert (request.method, request.url.path) == ("POST", "/v1/search")
    assert json.loads(request.content) == {
        "query": "telephone",
        "k": 2,
        "mode": "hybrid",
        "rerank": True,
        "collections": ["wiki"],
    }
    assert request.headers["x-request-id"] == "ks-1"


async def test_default_collection_and_upstream_errors(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    rag = FakeRag()
    async with app_client(
        settings.model_copy(update={"knowledge_collection": "missing"})
    ) as client:
        await start_with_fake_rag(settings, client, rag)
        response = await client.post(
            "/v1/tools/knowledge_search/invoke", json={"arguments": {"query": "x"}}
        )

    assert json.loads(rag.requests[0].content)["collections"] == ["missing"]
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["service"]) == ("collection_not_found", "rag_svc")


async def test_without_a_collection_it_searches_all_the_caller_may_read(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    rag = FakeRag()
    async with app_client(settings) as client:
        await start_with_fake_rag(settings, client, rag)
        response = await client.post(
            "/v1/tools/knowledge_search/invoke", json={"arguments": {"query": "Apollo 11"}}
        )

    assert response.status_code == 200, response.text
    assert "collections" not in json.loads(rag.requests[0].content)
    output = response.json()["output"]
    assert output["collection"] is None
    assert output["results"][0]["collection"] == "wiki"
