"""`/healthz`, `/readyz` and `/metrics`, and the readiness checks behind them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.contracts.health import CheckResult, HealthResponse, ReadinessResponse
from common.http_client import ServiceClient
from common.metrics import ServiceMetrics

__all__ = ["ReadinessCheck", "install_health_routes", "run_checks", "upstream_check"]


@dataclass(frozen=True)
class ReadinessCheck:
    """A dependency of a service; `probe` raises (or times out) when it is down."""

    name: str
    probe: Callable[[], Awaitable[object]]
    # Required dependencies decide readiness; optional ones are only reported.
    required: bool = True


def upstream_check(client: ServiceClient, *, required: bool = False) -> ReadinessCheck:
    """A check that the upstream behind `client` is alive (its `/healthz`)."""

    async def probe() -> None:
        result = await client.probe("/healthz")
        if not result.ok:
            raise RuntimeError(result.error or "not healthy")

    return ReadinessCheck(client.upstream, probe, required)


async def _run_one(check: ReadinessCheck, timeout_s: float) -> CheckResult:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(check.probe(), timeout_s)
    except TimeoutError:
        error = f"no answer within {timeout_s:.1f}s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return CheckResult(
        status="down" if error else "up",
        latency_ms=latency_ms,
        required=check.required,
        error=error,
    )


async def run_checks(checks: list[ReadinessCheck], timeout_s: float) -> dict[str, CheckResult]:
    """Run every check concurrently, each under `timeout_s`."""
    results = await asyncio.gather(*(_run_one(c, timeout_s) for c in checks))
    return {c.name: r for c, r in zip(checks, results, strict=True)}


def install_health_routes(
    app: FastAPI, service: str, metrics: ServiceMetrics, *, readyz: bool = True
) -> None:
    """Add `/healthz`, `/metrics` and (unless the service has its own) `/readyz`.

    `/readyz` runs the checks in `app.state.readiness_checks` (set by the
    service's lifespan) and answers 503 when a required one is down.
    """

    @app.get("/healthz", response_model=HealthResponse, tags=["health"])
    async def healthz() -> HealthResponse:
        return HealthResponse(service=service)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if not readyz:
        return

    @app.get(
        "/readyz",
        response_model=ReadinessResponse,
        tags=["health"],
        responses={503: {"model": ReadinessResponse, "description": "Not ready: what is down."}},
    )
    async def readyz_route(request: Request) -> JSONResponse:
        checks: list[ReadinessCheck] = getattr(request.app.state, "readiness_checks", [])
        timeout_s: float = request.app.state.settings.readiness_timeout_s
        results = await run_checks(checks, timeout_s)
        ready = all(r.status == "up" for r in results.values() if r.required)
        body = ReadinessResponse(
            status="ready" if ready else "not_ready", service=service, checks=results
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
