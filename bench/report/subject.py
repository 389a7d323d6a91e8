"""The platform a report measures: its gateway and key, each service's URL, the model.

`platform_under_test(url, key)` uses a running platform; without a URL it starts
one (`bench.platform.launched_platform`, as `make up` does) for the block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.platform import launched_platform, service_urls

__all__ = ["Reply", "Subject", "platform_under_test"]


@dataclass
class Reply:
    body: dict[str, Any]
    seconds: float
    headers: httpx.Headers

    @property
    def text(self) -> str:
        content = self.body["choices"][0]["message"]["content"] or ""
        # The source list the gateway appends holds facts too: only the answer counts.
        return str(content).split("\n\n**Sources**")[0]


@dataclass
class Subject:
    gateway: str
    key: str
    urls: dict[str, str] = field(default_factory=dict)
    model: str = ""

    def __post_init__(self) -> None:
        self.urls = service_urls(self.gateway)
        models = httpx.get(f"{self.urls['moe_svc']}/v1/models", timeout=30).json()["data"]
        self.model = str(models[0]["id"])

    def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        **extra: Any,
    ) -> Reply:
        """One chat completion through the gateway, as a user's client sends it."""
        started = time.perf_counter()
        response = httpx.post(
            f"{self.gateway}/v1/chat/completions",
            headers=self._auth(),
            json={"model": model, "messages": messages, "max_tokens": max_tokens, **extra},
            timeout=900,
        )
        response.raise_for_status()
        return Reply(response.json(), time.perf_counter() - started, response.headers)

    def expert_counts(self) -> list[list[int]]:
        """moe_svc's tokens per layer and expert since it started."""
        stats = httpx.get(f"{self.urls['moe_svc']}/v1/experts/stats", timeout=30).json()
        return [list(map(int, row)) for row in stats["counts"]]

    def model_card(self) -> dict[str, Any]:
        models = httpx.get(f"{self.gateway}/v1/models", headers=self._auth(), timeout=30).json()
        card: dict[str, Any] = next(m for m in models["data"] if m["id"] == self.model)
        return card

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextmanager
def platform_under_test(url: str | None, key: str | None, env: dict[str, str]) -> Iterator[Subject]:
    if url:
        yield Subject(url.rstrip("/"), key or "")
        return
    with launched_platform(env, prefix="report-") as (launch, local_key):
        yield Subject(launch.gateway, local_key)
