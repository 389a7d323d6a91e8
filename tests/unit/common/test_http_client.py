"""The service client against `httpx.MockTransport`: retries, breaker, errors, ids."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from common.breaker import BreakerState, CircuitBreaker
from common.errors import CircuitOpen, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from common.http_client import ServiceClient
from common.request_context import request_id_var
from common.retry import RetryPolicy

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A mock upstream answering from a script of statuses, recording each request."""

    def __init__(self, *statuses: int, body: object = None) -> None:
        self.statuses = list(statuses)
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status, json=self.body if self.body is not None else {"ok": True})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(
    handler: Handler,
    *,
    retry: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    sleeps: list[float] | None = None,
) -> ServiceClient:
    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return ServiceClient(
        "rag_svc",
        "http://rag.test",
        retry=retry or RetryPolicy(max_retries=2, base_backoff_s=0.1, max_backoff_s=0.15),
        breaker=breaker or CircuitBreaker(failure_threshold=100),
        transport=httpx.MockTransport(handler),
        sleep=fake_sleep,
    )


async def test_get_is_retried_on_503_then_succeeds() -> None:
    upstream = Recorder(503, 503, 200)
    sleeps: list[float] = []
    client = make_client(upstream, sleeps=sleeps)

    assert await client.get_json("/v1/collections") == {"ok": True}
    assert len(upstream.requests) == 3
    # Backoff is bounded: attempt n waits at most min(max, base * 2**n).
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.15


async def test_retries_stop_after_max_retries() -> None:
    upstream = Recorder(503)
    client = make_client(upstream)

    with pytest.raises(UpstreamError) as info:
        await client.get_json("/v1/collections")
    assert info.value.status_code == 503
    assert len(upstream.requests) == 3  # one call + max_retries


async def test_post_is_not_retried() -> None:
    upstream = Recorder(503, 200)
    client = make_client(upstream)

    with pytest.raises(UpstreamError) as info:
        await client.post_json("/v1/collections", {"name": "docs"})
    assert info.value.status_code == 503
    assert len(upstream.requests) == 1


async def test_post_marked_idempotent_is_retried() -> None:
    upstream = Recorder(502, 200)
    client = make_client(upstream)

    assert await client.post_json("/v1/embeddings", {"input": "x"}, idempotent=True) == {"ok": True}
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 500])
async def test_non_retryable_status_is_not_retried(status: int) -> None:
    upstream = Recorder(status, 200)
    client = make_client(upstream)

    with pytest.raises(UpstreamError):
        await client.get_json("/x")
    assert len(upstream.requests) == 1


async def test_connection_refused_is_retried_then_503() -> None:
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    client = make_client(refuse)
    with pytest.raises(UpstreamUnavailable) as info:
        await client.get_json("/x")
    assert info.value.status_code == 503
    assert "rag_svc" in info.value.message
    assert len(calls) == 3


async def test_timeout_becomes_504_and_post_timeout_is_not_retried() -> None:
    calls = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    client = make_client(slow)
    with pytest.raises(UpstreamTimeout) as info:
        await client.post_json("/v1/answer", {})
    assert info.value.status_code == 504
    assert len(calls) == 1


async def test_upstream_error_keeps_code_type_origin_and_request_id() -> None:
    body = {
        "error": {
            "message": "collection 'docs' not found",
            "type": "not_found_error",
            "param": "name",
            "code": "collection_not_found",
            "service": "rag_svc",
            "request_id": "rid-1",
        }
    }
    client = make_client(Recorder(404, body=body))

    with pytest.raises(UpstreamError) as info:
        await client.get_json("/v1/collections/docs")
    err = info.value
    assert (err.status_code, err.error_type, err.code, err.param) == (
        404,
        "not_found_error",
        "collection_not_found",
        "name",
    )
    detail = err.detail("router_svc", "other")
    assert detail.service == "rag_svc" and detail.request_id == "rid-1"


async def test_non_json_error_body_is_described() -> None:
    client = make_client(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(UpstreamError) as info:
        await client.post_json("/x", {})
    assert info.value.status_code == 502
    assert "rag_svc answered HTTP 502" in info.value.message


async def test_request_id_of_the_current_request_is_sent() -> None:
    upstream = Recorder(200)
    client = make_client(upstream)
    token = request_id_var.set("rid-abc")
    try:
        await client.get_json("/x")
    finally:
        request_id_var.reset(token)
    await client.get_json("/x")

    assert upstream.requests[0].headers["X-Request-ID"] == "rid-abc"
    # Outside a request a fresh id is made, so the call can still be traced.
    assert len(upstream.requests[1].headers["X-Request-ID"]) == 32


async def test_breaker_opens_after_threshold_and_fails_fast() -> None:
    upstream = Recorder(500)
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=5.0, clock=clock)
    client = make_client(upstream, breaker=breaker)

    for _ in range(3):
        with pytest.raises(UpstreamError):
            await client.get_json("/x")
    assert breaker.state is BreakerState.OPEN

    with pytest.raises(CircuitOpen) as info:
        await client.get_json("/x")
    assert info.value.status_code == 503
    assert info.value.headers["Retry-After"] == "5"
    assert len(upstream.requests) == 3  # the open circuit made no call


def state_now(breaker: CircuitBreaker) -> BreakerState:
    """The state as the breaker's clock has it now: a call, so the type checker does not
    carry an earlier assert about `breaker.state` past a move of the clock."""
    return breaker.state


async def test_breaker_half_opens_after_reset_and_closes_on_success() -> None:
    upstream = Recorder(503, 503, 200, 200)
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5.0, clock=clock)
    client = make_client(upstream, retry=RetryPolicy(max_retries=0), breaker=breaker)

    for _ in range(2):
        with pytest.raises(UpstreamError):
            await client.get_json("/x")
    assert state_now(breaker) is BreakerState.OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        await client.get_json("/x")

    clock.now += 0.2
    assert state_now(breaker) is BreakerState.HALF_OPEN
    assert await client.get_json("/x") == {"ok": True}
    assert state_now(breaker) is BreakerState.CLOSED
    assert await client.get_json("/x") == {"ok": True}
    assert len(upstream.requests) == 4


async def test_failed_trial_reopens_the_circuit() -> None:
    upstream = Recorder(503)
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=2.0, clock=clock)
    client = make_client(upstream, retry=RetryPolicy(max_retries=0), breaker=breaker)

    with pytest.raises(UpstreamError):
        await client.get_json("/x")
    clock.now += 2.0
    with pytest.raises(UpstreamError):
        await client.get_json("/x")  # the half-open trial fails
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        await client.get_json("/x")
    assert len(upstream.requests) == 2


def test_half_open_lets_one_trial_through_at_a_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0

    assert breaker.allow() is True
    assert breaker.allow() is False


async def test_client_errors_do_not_open_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    client = make_client(Recorder(404), breaker=breaker)
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await client.get_json("/x")
    assert breaker.state is BreakerState.CLOSED


def test_backoff_is_exponential_and_bounded() -> None:
    policy = RetryPolicy(base_backoff_s=0.1, max_backoff_s=1.0)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)]:
        samples = [policy.backoff_s(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.5  # jitter spreads over the range


def test_only_idempotent_methods_are_retried() -> None:
    policy = RetryPolicy(max_retries=1)
    assert [
        m for m in ("GET", "HEAD", "PUT", "DELETE", "POST", "PATCH") if policy.should_retry(m, 0)
    ] == ["GET", "HEAD", "PUT", "DELETE"]
    assert policy.should_retry("GET", 1) is False


async def test_stream_yields_upstream_bytes() -> None:
    events = [b"data: 1\n\n", b"data: [DONE]\n\n"]

    async def chunks() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    client = make_client(
        lambda r: httpx.Response(
            200, content=chunks(), headers={"content-type": "text/event-stream"}
        )
    )
    async with client.stream("POST", "/v1/chat/completions", json={}) as response:
        received = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(received) == b"".join(events)


async def test_stream_raises_upstream_error_before_streaming() -> None:
    body = {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
            "service": "moe_svc",
        }
    }
    client = make_client(lambda r: httpx.Response(400, content=json.dumps(body).encode()))
    with pytest.raises(UpstreamError) as info:
        async with client.stream("POST", "/v1/chat/completions", json={}):
            pass
    assert info.value.status_code == 400 and info.value.param == "model"


async def test_probe_never_raises_and_ignores_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=60, clock=clock)
    breaker.record_failure()
    client = make_client(Recorder(200, body={"status": "ready"}), breaker=breaker)

    result = await client.probe("/readyz")
    assert result.ok and result.body == {"status": "ready"}

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    down = await make_client(refuse).probe("/readyz")
    assert not down.ok and "ConnectError" in (down.error or "")


def _overloaded(request: httpx.Request) -> httpx.Response:
    body = {
        "error": {
            "message": "The server is overloaded.",
            "type": "service_unavailable",
            "param": None,
            "code": "overloaded",
            "service": "moe_svc",
        }
    }
    return httpx.Response(503, json=body, headers={"Retry-After": "7"})


async def test_an_overloaded_answer_passes_on_with_its_retry_after_and_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _overloaded(request)

    breaker = CircuitBreaker(failure_threshold=2)
    client = make_client(upstream, breaker=breaker)
    for _ in range(5):
        with pytest.raises(UpstreamError) as info:
            # idempotent: a 503 without `overloaded` would be retried twice
            await client.post_json("/v1/chat/completions", {}, idempotent=True)
        error = info.value
        assert (error.status_code, error.code, error.origin) == (503, "overloaded", "moe_svc")
        assert error.headers == {"Retry-After": "7"}
    assert len(calls) == 5
    # busy is not broken: the breaker stays closed, the next request still reaches it
    assert breaker.state is BreakerState.CLOSED


async def test_an_overloaded_stream_passes_on_and_closes_a_half_open_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    client = make_client(_overloaded, breaker=breaker)
    with pytest.raises(UpstreamError) as info:
        async with client.stream("POST", "/v1/chat/completions", json={}):
            pass
    assert info.value.code == "overloaded" and info.value.headers["Retry-After"] == "7"
    # the trial call got an answer: the circuit closes instead of waiting on it forever
    assert breaker.state is BreakerState.CLOSED


async def test_other_errors_keep_their_retry_after() -> None:
    client = make_client(lambda r: httpx.Response(429, json={}, headers={"Retry-After": "3"}))
    with pytest.raises(UpstreamError) as info:
        await client.get_json("/x")
    assert info.value.status_code == 429 and info.value.headers["Retry-After"] == "3"
