"""What crosses service boundaries, between real uvicorn processes a -> b -> c."""

from __future__ import annotations

import json

import httpx
import pytest

from common.errors import UpstreamTimeout, UpstreamUnavailable
from common.http_client import ServiceClient
from common.retry import RetryPolicy
from tests.helpers.servers import RunningServer, free_port


def _access_lines(server: RunningServer, request_id: str) -> list[dict[str, object]]:
    logs = server.wait_for_log(f'"request_id": "{request_id}"')
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [r for r in records if r["request_id"] == request_id and r["logger"] == "common.access"]


def test_request_id_propagates_across_two_hops(chain: list[RunningServer]) -> None:
    a = chain[0]
    response = httpx.get(f"{a.url}/hop", headers={"X-Request-ID": "trace-7f3a"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-7f3a"
    body = response.json()
    assert body["request_id"] == "trace-7f3a"
    assert body["downstream"]["hop"] == "b"
    assert body["downstream"]["request_id"] == "trace-7f3a"
    assert body["downstream"]["downstream"] == {
        "hop": "c",
        "request_id": "trace-7f3a",
        "downstream": None,
    }
    # Each hop's structured access log carries the same id.
    for server in chain:
        assert [r["msg"] for r in _access_lines(server, "trace-7f3a")] == ["GET /hop 200"]


def test_request_id_is_generated_when_absent(chain: list[RunningServer]) -> None:
    response = httpx.get(f"{chain[0].url}/hop")

    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32
    assert response.json()["downstream"]["downstream"]["request_id"] == generated


def test_unsafe_request_id_is_replaced(chain: list[RunningServer]) -> None:
    response = httpx.get(f"{chain[0].url}/hop", headers={"X-Request-ID": "bad id\twith\tspaces"})

    assert response.headers["X-Request-ID"] != "bad id\twith\tspaces"
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_upstream_error_passes_through_with_its_code(chain: list[RunningServer]) -> None:
    response = httpx.get(f"{chain[0].url}/fail/404", headers={"X-Request-ID": "err-404"})

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "widget missing at c",
            "type": "not_found_error",
            "param": None,
            "code": "widget_missing",
            "service": "c",
            "request_id": "err-404",
        }
    }


def test_upstream_validation_error_passes_through(chain: list[RunningServer]) -> None:
    response = httpx.post(f"{chain[0].url}/echo", json={"text": "hi", "count": 2})
    assert response.json() == {"text": "hihi", "hop": "c"}

    # a validates first: a bad body never leaves the first hop.
    bad = httpx.post(f"{chain[0].url}/echo", json={"text": "hi", "count": "many"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "count"
    assert bad.json()["error"]["service"] == "a"


def test_non_retryable_upstream_5xx_keeps_status(chain: list[RunningServer]) -> None:
    response = httpx.get(f"{chain[0].url}/fail/501")

    assert response.status_code == 501
    assert response.json()["error"]["service"] == "c"


def test_unhandled_exception_is_a_generic_500(chain: list[RunningServer]) -> None:
    a = chain[0]
    response = httpx.get(f"{a.url}/boom", headers={"X-Request-ID": "boom-1"})

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["request_id"] == "boom-1"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    # The stack trace is in the log, tied to the request.
    logs = a.wait_for_log("boom-1")
    boom_lines = [json.loads(x) for x in logs.splitlines() if "boom-1" in x]
    assert any("RuntimeError" in line.get("exc", "") for line in boom_lines)


def test_sse_stream_passes_through_two_hops(chain: list[RunningServer]) -> None:
    with httpx.stream("GET", f"{chain[0].url}/stream?n=4") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]

    assert events[-1] == "data: [DONE]"
    assert [json.loads(e[6:]) for e in events[:-1]] == [{"i": i, "from": "c"} for i in range(4)]


def test_stream_error_arrives_before_the_stream(chain: list[RunningServer]) -> None:
    response = httpx.get(f"{chain[0].url}/stream?n=-1")

    assert response.status_code == 422
    assert response.json()["error"]["param"] == "n"
    assert response.json()["error"]["service"] == "c"


def test_metrics_count_requests_by_route(chain: list[RunningServer]) -> None:
    a = chain[0]
    httpx.get(f"{a.url}/hop")
    httpx.get(f"{a.url}/no/such/route")

    text = httpx.get(f"{a.url}/metrics").text
    assert 'http_requests_total{method="GET",route="/hop",service="a",status="200"}' in text
    assert 'route="unmatched",service="a",status="404"' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'upstream_calls_total{outcome="ok",service="a",upstream="next"}' in text


async def test_a_slow_upstream_is_a_timeout_and_the_client_keeps_working(
    chain: list[RunningServer],
) -> None:
    # ServiceClient's own transport (aiohttp under httpx) against a real server.
    client = ServiceClient("c", chain[2].url, timeout_s=0.3, retry=RetryPolicy(0))
    try:
        with pytest.raises(UpstreamTimeout) as timed_out:
            await client.get_json("/slow", params={"s": 3})
        assert timed_out.value.status_code == 504
        assert await client.get_json("/slow", params={"s": 0}) == {"hop": "c", "slept": 0}
        echoed = await client.post_json("/echo", {"text": "ab", "count": 2})
        assert echoed == {"text": "abab", "hop": "c"}
    finally:
        await client.aclose()


async def test_an_unanswered_port_is_unavailable() -> None:
    client = ServiceClient("nowhere", f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(0))
    try:
        with pytest.raises(UpstreamUnavailable):
            await client.get_json("/hop")
    finally:
        await client.aclose()


def test_upstream_down_is_a_503_naming_it(chain: list[RunningServer]) -> None:
    # c is stopped last in this module: b's call to it is refused.
    a, c = chain[0], chain[2]
    c.stop()

    response = httpx.get(f"{a.url}/hop")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "upstream_unavailable"
    assert error["service"] == "b"
    assert "next" in error["message"]
