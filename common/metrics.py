"""Prometheus metrics of one service: requests, latency, errors by route."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServiceMetrics:
    """The metrics of one app, on a registry of its own.

    A registry per app (not the global one) lets several apps live in one
    process, as they do in tests.
    """

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests served, by route template and status.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to the end of the response, by route template.",
            ["service", "method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "http_request_errors_total",
            "Responses with status >= 400, by route template and status.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served now.",
            ["service"],
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "upstream_calls_total",
            "Calls to upstream services, by upstream and outcome.",
            ["service", "upstream", "outcome"],
            registry=self.registry,
        )
        self.service = service

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = {"service": self.service, "method": method, "route": route}
        self.requests.labels(status=str(status), **labels).inc()
        self.latency.labels(**labels).observe(seconds)
        if status >= 400:
            self.errors.labels(status=str(status), **labels).inc()
