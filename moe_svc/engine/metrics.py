"""Prometheus metrics of the generation engine, on the service's registry.

Every series is labelled with the model it counts: `EngineMetrics(registry, model)`
registers the families once, `for_model(other)` gives another engine (a model
version served next to the first) its own series in the same families.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EngineMetrics"]

_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)


def _families(registry: CollectorRegistry) -> dict[str, Any]:
    return {
        "ttft": Histogram(
            "moe_time_to_first_token_seconds",
            "From a request's arrival to its first generated token (queueing and prefill).",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        ),
        "inter_token": Histogram(
            "moe_inter_token_latency_seconds",
            "Between consecutive generated tokens of one request.",
            ["model"],
            buckets=_ITL_BUCKETS,
            registry=registry,
        ),
        "generated": Counter(
            "moe_generated_tokens_total", "Tokens generated.", ["model"], registry=registry
        ),
        "prompt_tokens": Counter(
            "moe_prompt_tokens_total", "Prompt tokens prefilled.", ["model"], registry=registry
        ),
        "batch_size": Gauge(
            "moe_batch_size", "Sequences decoding together.", ["model"], registry=registry
        ),
        "waiting": Gauge(
            "moe_queue_size", "Requests waiting for a batch slot.", ["model"], registry=registry
        ),
        "aborted": Counter(
            "moe_requests_aborted_total",
            "Requests aborted before they finished (their client went away).",
            ["model"],
            registry=registry,
        ),
        "shed": Counter(
            "moe_requests_shed_total",
            "Requests refused (queue full) or dropped from the queue (waited past "
            "max_queue_wait_s): answered 503 overloaded.",
            ["model"],
            registry=registry,
        ),
        "finished": Counter(
            "moe_requests_finished_total",
            "Finished generation requests, by finish reason.",
            ["model", "finish_reason"],
            registry=registry,
        ),
    }


class EngineMetrics:
    def __init__(
        self, registry: CollectorRegistry, model: str, families: dict[str, Any] | None = None
    ) -> None:
        self._families = families if families is not None else _families(registry)
        self._registry = registry
        self._model = model
        child = {
            name: family.labels(model=model)
            for name, family in self._families.items()
            if name != "finished"  # labelled by finish reason too, as each request ends
        }
        self.ttft = child["ttft"]
        self.inter_token = child["inter_token"]
        self.generated = child["generated"]
        self.prompt_tokens = child["prompt_tokens"]
        self.batch_size = child["batch_size"]
        self.waiting = child["waiting"]
        self.aborted = child["aborted"]
        self.shed = child["shed"]

    def for_model(self, model: str) -> EngineMetrics:
        """The same families, counting for another model (a version served alongside)."""
        return EngineMetrics(self._registry, model, self._families)

    def finished(self, reason: str) -> None:
        self._families["finished"].labels(model=self._model, finish_reason=reason).inc()
