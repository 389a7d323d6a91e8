"""Regression tests of the defects the faults found, against `httpx.MockTransport`.

An upstream answering 200 with a body that is not JSON made every `get_json` and
`post_json` caller answer 500 (the gateway's named-model chat and `/v1/models`
among them); the gateway's readiness counted any 2xx from a service's `/readyz`
as `up`, so an upstream answering garbage left the platform `ready`.
"""

from __future__ import annotations

import httpx
import pytest

from common.errors import BadUpstreamResponse
from common.http_client import ServiceClient
from gateway.readiness import platform_readiness

GARBAGE = b"\x00\x17<html>upstream exploded \xff\xfe"


def _client(name: str, body: bytes, status: int = 200) -> ServiceClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    return ServiceClient(name, f"http://{name}.test", transport=httpx.MockTransport(answer))


async def _redis_up() -> bool:
    return True


@pytest.mark.parametrize("call", ["get_json", "post_json"])
async def test_a_2xx_that_is_not_json_is_a_502_naming_the_upstream(call: str) -> None:
    client = _client("moe_svc", GARBAGE)
    with pytest.raises(BadUpstreamResponse) as caught:
        if call == "get_json":
            await client.get_json("/v1/models")
        else:
            await client.post_json("/v1/chat/completions", {"messages": []})
    assert caught.value.status_code == 502
    assert caught.value.code == "bad_upstream_response"
    assert caught.value.message.startswith("moe_svc answered /v1/")
    await client.aclose()


async def test_readiness_counts_only_a_service_that_says_it_is_ready() -> None:
    clients = {
        "moe_svc": _client("moe_svc", GARBAGE),
        "rag_svc": _client("rag_svc", b'{"status": "ready", "service": "rag_svc", "checks": {}}'),
    }
    readiness = await platform_readiness(clients, _redis_up, 1.0)
    assert readiness.status == "degraded"
    assert readiness.services["moe_svc"].status == "down"
    assert "without saying it is ready" in (readiness.services["moe_svc"].error or "")
    assert readiness.services["rag_svc"].status == "up"
    for client in clients.values():
        await client.aclose()
