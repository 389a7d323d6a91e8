"""The async HTTP client for service-to-service calls.

Per call: a timeout, the caller's `X-Request-ID`, retries with exponential
backoff and jitter for idempotent calls only, and a circuit breaker per
upstream. An upstream's error answer is re-raised as `UpstreamError` with its
status, type, code, origin and `Retry-After`; a refused connection becomes
`UpstreamUnavailable` (503), a timeout `UpstreamTimeout` (504), an open
circuit `CircuitOpen` (503, without calling). Streams (SSE) pass through.

An upstream that sheds load (503, code `overloaded`, with `Retry-After`) is
alive and answering: its answer is passed on to the caller as it came, not
retried (a retry would only add to the queue that shed it) and not counted
by the breaker as a failure (an open circuit would refuse, for its whole
reset time, the requests the upstream still has room for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from common.aiohttp_transport import AiohttpTransport
from common.breaker import CircuitBreaker
from common.caller import caller_var
from common.errors import (
    OVERLOADED,
    BadUpstreamResponse,
    CircuitOpen,
    ServiceError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_type_for_status,
)
from common.metrics import ServiceMetrics
from common.request_context import (
    MODEL_VERSION_HEADER,
    REQUEST_ID_HEADER,
    current_model_version,
    current_request_id,
    new_request_id,
)
from common.retry import RetryPolicy

__all__ = ["ProbeResult", "ServiceClient"]

logger = logging.getLogger("common.http_client")

# Statuses that say the upstream itself is unwell (not the caller's request).
_BREAKER_FAILURE_STATUSES = frozenset({500, 502, 503, 504})


class ProbeResult:
    """The outcome of one health or readiness probe of an upstream."""

    __slots__ = ("body", "error", "latency_ms", "ok")

    def __init__(self, ok: bool, latency_ms: float, body: Any = None, error: str | None = None):
        self.ok = ok
        self.latency_ms = latency_ms
        self.body = body
        self.error = error


def upstream_error_from_response(upstream: str, response: httpx.Response) -> UpstreamError:
    """Turn an upstream's error answer into an `UpstreamError` that keeps its code (and its
    `Retry-After`, for the caller's caller)."""
    retry_after = response.headers.get("Retry-After")
    headers = {"Retry-After": retry_after} if retry_after else None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        return UpstreamError(
            str(error["message"]),
            status_code=response.status_code,
            error_type=str(error.get("type") or error_type_for_status(response.status_code)),
            origin=str(error.get("service") or upstream),
            param=error.get("param"),
            code=error.get("code"),
            request_id=error.get("request_id") or response.headers.get(REQUEST_ID_HEADER),
            headers=headers,
        )
    snippet = response.text[:200] if response.content else ""
    return UpstreamError(
        f"{upstream} answered HTTP {response.status_code}: {snippet}".rstrip(": "),
        status_code=response.status_code,
        error_type=error_type_for_status(response.status_code),
        origin=upstream,
        request_id=response.headers.get(REQUEST_ID_HEADER),
        headers=headers,
    )


class ServiceClient:
    """Calls one upstream service; one instance (and breaker) per upstream."""

    def __init__(
        self,
        upstream: str,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: ServiceMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headers: Mapping[str, str] | None = None,
        forward_caller: bool = True,
    ) -> None:
        """`headers` go with every call (an engine's key); `forward_caller` False keeps the
        platform's caller headers (tenant, user) from a server outside the platform."""
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._metrics = metrics
        self._sleep = sleep
        self._fixed_headers = dict(headers or {})
        self._forward_caller = forward_caller
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport or AiohttpTransport(),
            timeout=self._timeout(timeout_s),
            # Service-to-service traffic stays on configured hosts: no env proxies.
            trust_env=False,
        )

    def _timeout(self, timeout_s: float) -> httpx.Timeout:
        return httpx.Timeout(timeout_s, connect=min(timeout_s, self.connect_timeout_s))

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        merged = {**self._fixed_headers, **(headers or {})}
        merged[REQUEST_ID_HEADER] = current_request_id() or new_request_id()
        # The caller travels with the call (a caller named explicitly in `headers` wins).
        caller = caller_var.get()
        if caller is not None and self._forward_caller:
            for name, value in caller.headers().items():
                merged.setdefault(name, value)
        # So is the core-model version the gateway chose for the request.
        version = current_model_version()
        if version is not None and self._forward_caller:
            merged.setdefault(MODEL_VERSION_HEADER, version)
        return merged

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.upstream_calls.labels(
                service=self._metrics.service, upstream=self.upstream, outcome=outcome
            ).inc()

    def _circuit_open(self) -> CircuitOpen:
        self._count("circuit_open")
        wait = self.breaker.retry_after_s
        return CircuitOpen(
            f"{self.upstream} is failing; not calling it for {wait:.1f}s more (circuit open).",
            code="circuit_open",
            headers={"Retry-After": str(max(1, round(wait)))},
        )

    def _judge(self, status: int, failure: UpstreamError | None) -> None:
        """Tell the breaker what an answer says of the upstream's health."""
        if failure is not None and failure.code == OVERLOADED:
            self.breaker.record_success()  # busy, not broken: it answered at once
        elif status in _BREAKER_FAILURE_STATUSES:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()

    def _transport_error(self, exc: httpx.TransportError, path: str) -> ServiceError:
        self.breaker.record_failure()
        if isinstance(exc, httpx.TimeoutException):
            self._count("timeout")
            return UpstreamTimeout(
                f"{self.upstream} did not answer {path} in time ({type(exc).__name__}).",
                code="upstream_timeout",
            )
        self._count("unavailable")
        return UpstreamUnavailable(
            f"{self.upstream} is unreachable at {self.base_url} ({type(exc).__name__}).",
            code="upstream_unreachable",
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        files: Any = None,
        data: Any = None,
        timeout_s: float | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Call the upstream and return its 2xx/3xx response, or raise.

        `idempotent` overrides the method's own idempotency (a POST that is
        safe to repeat, say); only idempotent calls are retried.
        """
        method = method.upper()
        attempt = 0
        while True:
            if not self.breaker.allow():
                raise self._circuit_open()
            failure: ServiceError
            try:
                response = await self._client.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=self._headers(headers),
                    content=content,
                    files=files,
                    data=data,
                    timeout=self._timeout(timeout_s or self.timeout_s),
                )
            except httpx.TransportError as exc:
                failure = self._transport_error(exc, path)
            else:
                status = response.status_code
                if status < 400:
                    self._judge(status, None)
                    self._count("ok")
                    return response
                failure = upstream_error_from_response(self.upstream, response)
                self._judge(status, failure)
                self._count(f"http_{status // 100}xx")
                if status not in self.retry.retry_statuses or failure.code == OVERLOADED:
                    raise failure
            if not self.retry.should_retry(method, attempt, idempotent=idempotent):
                raise failure
            delay = self.retry.backoff_s(attempt)
            logger.warning(
                "retrying upstream call",
                extra={
                    "upstream": self.upstream,
                    "path": path,
                    "attempt": attempt + 1,
                    "delay_s": round(delay, 3),
                    "reason": failure.message,
                },
            )
            await self._sleep(delay)
            attempt += 1

    def _decoded(self, response: httpx.Response, path: str) -> Any:
        # A 2xx that is not JSON breaks the contract: 502 naming the upstream, never a 500.
        try:
            return response.json()
        except ValueError:
            self._count("bad_response")
            raise BadUpstreamResponse(
                self.upstream, f"answered {path} with a body that is not JSON."
            ) from None

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        """GET `path` and return the decoded JSON body (502 when it is not JSON)."""
        return self._decoded(await self.request("GET", path, **kwargs), path)

    async def post_json(self, path: str, payload: Any, **kwargs: Any) -> Any:
        """POST `payload` as JSON to `path` and return the decoded JSON body (502 when it is
        not JSON)."""
        return self._decoded(await self.request("POST", path, json=payload, **kwargs), path)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Open a streamed call; errors are raised before the first byte is read.

        Streams are not retried: part of them may already have reached the
        caller. Leaving the block closes the upstream connection, which
        cancels the upstream's work when the client went away.
        """
        if not self.breaker.allow():
            raise self._circuit_open()
        request = self._client.build_request(
            method.upper(),
            path,
            json=json,
            headers=self._headers(headers),
            timeout=self._timeout(timeout_s or self.timeout_s),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, path) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                failure = upstream_error_from_response(self.upstream, response)
                self._judge(response.status_code, failure)
                self._count(f"http_{response.status_code // 100}xx")
                raise failure
            self.breaker.record_success()
            self._count("ok")
            yield response
        finally:
            await response.aclose()

    async def probe(self, path: str = "/healthz", timeout_s: float = 2.0) -> ProbeResult:
        """One health probe: no retries, no breaker, never raises.

        Probes bypass the breaker so that a restarted upstream shows up as
        soon as it answers.
        """
        started = time.perf_counter()
        try:
            response = await self._client.get(
                path, headers=self._headers(None), timeout=self._timeout(timeout_s)
            )
        except httpx.HTTPError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return ProbeResult(False, elapsed, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            return ProbeResult(False, elapsed, body, error=f"HTTP {response.status_code}")
        return ProbeResult(True, elapsed, body)

    async def aclose(self) -> None:
        await self._client.aclose()
