"""The platform's readiness as the gateway sees it: every service and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from common.contracts.health import GatewayReadiness, ServiceStatus
from common.http_client import ServiceClient

__all__ = ["platform_readiness"]


async def _redis_status(ping: Callable[[], Awaitable[object]], timeout_s: float) -> ServiceStatus:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(ping(), timeout_s)
    except Exception as exc:
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        return ServiceStatus(status="down", latency_ms=elapsed, error=type(exc).__name__)
    return ServiceStatus(status="up", latency_ms=round((time.perf_counter() - started) * 1000, 2))


async def _service_status(client: ServiceClient, timeout_s: float) -> ServiceStatus:
    result = await client.probe("/readyz", timeout_s)
    error = result.error
    # Up means the service said it is ready: a 2xx of anything else (a proxy's page,
    # a broken answer) is no readiness.
    said_ready = isinstance(result.body, dict) and result.body.get("status") == "ready"
    if result.ok and not said_ready:
        error = "answered /readyz without saying it is ready"
    return ServiceStatus(
        status="up" if result.ok and said_ready else "down",
        latency_ms=round(result.latency_ms, 2),
        error=error,
    )


async def _engine_status(client: ServiceClient, timeout_s: float) -> ServiceStatus:
    # An external engine has no /readyz: it is up when it lists its models.
    result = await client.probe("/v1/models", timeout_s)
    return ServiceStatus(
        status="up" if result.ok else "down",
        latency_ms=round(result.latency_ms, 2),
        error=result.error,
    )


async def platform_readiness(
    clients: dict[str, ServiceClient],
    redis_ping: Callable[[], Awaitable[object]],
    timeout_s: float,
    engines: dict[str, ServiceClient] | None = None,
) -> GatewayReadiness:
    """Probe every service's `/readyz`, every external engine and Redis concurrently.

    A service is `up` when its own readiness says ready, an engine when it
    lists its models; the platform is `ready` when everything is up,
    `degraded` otherwise.
    """
    names = list(clients)
    engines = engines or {}
    statuses = await asyncio.gather(
        *(_service_status(clients[n], timeout_s) for n in names),
        *(_engine_status(client, timeout_s) for client in engines.values()),
        _redis_status(redis_ping, timeout_s),
    )
    services = dict(zip([*names, *engines, "redis"], statuses, strict=True))
    ready = all(s.status == "up" for s in services.values())
    return GatewayReadiness(status="ready" if ready else "degraded", services=services)
