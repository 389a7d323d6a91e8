"""When and how long to wait before retrying a call to an upstream."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy"]

# RFC 9110 idempotent methods: repeating them cannot do the work twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter, for idempotent calls.

    Attempt n (0-based) waits a uniform random time in
    [0, min(max_backoff_s, base_backoff_s * 2**n)].
    """

    max_retries: int = 2
    base_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    retry_statuses: frozenset[int] = field(default=frozenset({502, 503, 504}))

    def should_retry(self, method: str, attempt: int, *, idempotent: bool | None = None) -> bool:
        """Whether attempt `attempt` (0-based) that failed may be repeated."""
        allowed = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        return allowed and attempt < self.max_retries

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_backoff_s, self.base_backoff_s * (2**attempt))
        return (rng or random).uniform(0.0, ceiling)
