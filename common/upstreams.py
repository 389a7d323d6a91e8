"""One `ServiceClient` per upstream of a service, built from its settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from common.breaker import CircuitBreaker
from common.http_client import ServiceClient
from common.metrics import ServiceMetrics
from common.retry import RetryPolicy
from common.settings import ServiceSettings

__all__ = ["Upstreams"]


class Upstreams:
    """The clients of a service's upstreams, by service name (`upstreams["rag_svc"]`)."""

    def __init__(self, clients: dict[str, ServiceClient]) -> None:
        self._clients = clients

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, metrics: ServiceMetrics | None = None
    ) -> Upstreams:
        retry = RetryPolicy(
            max_retries=settings.retry_max,
            base_backoff_s=settings.retry_base_backoff_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )
        clients = {
            name: ServiceClient(
                name,
                url,
                timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                retry=retry,
                breaker=CircuitBreaker(
                    settings.breaker_failure_threshold, settings.breaker_reset_s
                ),
                metrics=metrics,
            )
            for name, url in settings.upstream_urls().items()
        }
        return cls(clients)

    def __getitem__(self, name: str) -> ServiceClient:
        try:
            return self._clients[name]
        except KeyError:
            known = ", ".join(self._clients) or "none"
            message = f"{name!r} is not an upstream of this service (known: {known})"
            raise KeyError(message) from None

    def __iter__(self) -> Iterator[ServiceClient]:
        return iter(self._clients.values())

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
