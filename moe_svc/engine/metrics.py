"""Prometheus metrics of the generation engine, on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EngineMetrics"]

_TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        labels = {"model": model}
        self.ttft = Histogram(
            "moe_time_to_first_token_seconds",
            "From a request's arrival to its first generated token (queueing and prefill).",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        ).labels(**labels)
        self.inter_token = Histogram(
            "moe_inter_token_latency_seconds",
            "Between consecutive generated tokens of one request.",
            ["model"],
            buckets=_ITL_BUCKETS,
            registry=registry,
        ).labels(**labels)
        self.generated = Counter(
            "moe_generated_tokens_total", "Tokens generated.", ["model"], registry=registry
        ).labels(**labels)
        self.prompt_tokens = Counter(
            "moe_prompt_tokens_total", "Prompt tokens prefilled.", ["model"], registry=registry
        ).labels(**labels)
        self.batch_size = Gauge(
            "moe_batch_size", "Sequences decoding together.", ["model"], registry=registry
        ).labels(**labels)
        self.waiting = Gauge(
            "moe_queue_size", "Requests waiting for a batch slot.", ["model"], registry=registry
        ).labels(**labels)
        self.aborted = Counter(
            "moe_requests_aborted_total",
            "Requests aborted before they finished (their client went away).",
            ["model"],
            registry=registry,
        ).labels(**labels)
        self.shed = Counter(
            "moe_requests_shed_total",
            "Requests refused (queue full) or dropped from the queue (waited past "
            "max_queue_wait_s): answered 503 overloaded.",
            ["model"],
            registry=registry,
        ).labels(**labels)
        self._finished = Counter(
            "moe_requests_finished_total",
            "Finished generation requests, by finish reason.",
            ["model", "finish_reason"],
            registry=registry,
        )
        self._model = model

    def finished(self, reason: str) -> None:
        self._finished.labels(model=self._model, finish_reason=reason).inc()
