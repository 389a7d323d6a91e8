"""What users do to the gateway, for Locust (`make load`, `make soak`, bench/load/run.py).

`PlatformUser` does what a user of the platform does, weighted as users mix it:
`auto` chat turns in a session (factual, reasoning, creative, tool and chit-chat
questions), streamed chat on the core model (time to first token and tokens/s read
from the SSE stream), embeddings, searches of the wiki, image generation and
document uploads. Every answer is recorded (scenario, status, latency, the step's users
then, and for streams TTFT and tokens) and written as JSON to `LOAD_RECORDS` when the
run ends; bench/load/report.py turns the records into the report.

The load follows `LOAD_STAGES` ("users:seconds,users:seconds,..."), a ramp of steps,
and stops after `LOAD_MAX_REQUESTS` answers even if time is left. `LOAD_API_KEY` is
the gateway key; `LOAD_CHAT_MODEL` the core model's id (else the first chat model
`/v1/models` lists).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from locust import HttpUser, LoadTestShape, between, constant, events, task
from locust.env import Environment

# Questions as users ask them, by the intent the router should find.
QUESTIONS: dict[str, list[str]] = {
    "factual": [
        "Who wrote Animal Farm?",
        "What is the capital of Alaska?",
        "Where was Abraham Lincoln born?",
    ],
    "reasoning": [
        "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
        "If I have 3 boxes of 12 eggs and use 7 eggs, how many are left?",
    ],
    "creative": [
        "Write a short poem about the sea at night.",
        "Invent a name and a slogan for a bakery.",
    ],
    "tool": [
        "Convert 72 F to C",
        "What is 1234 * 5678?",
    ],
    "chat": [
        "Hello, how are you today?",
        "Thanks, that was helpful!",
    ],
}
EMBED_INPUTS = ["The quick brown fox jumps over the lazy dog.", "Load testing a gateway."]
SEARCH_QUERIES = ["capital of Alabama", "Orwell's novel", "official language of Andorra"]
UPLOAD_COLLECTION = "loadtest"
# A generation that never ends is a hang: the client gives up after this and records it.
TIMEOUT_S = float(os.environ.get("LOAD_TIMEOUT_S", "120"))
MAX_TOKENS = 48

_records: list[dict[str, Any]] = []
_chat_model: str | None = os.environ.get("LOAD_CHAT_MODEL") or None


def _stages() -> list[tuple[int, float]]:
    spec = os.environ.get("LOAD_STAGES", "2:20")
    stages = []
    for part in spec.split(","):
        users, seconds = part.split(":")
        stages.append((int(users), float(seconds)))
    return stages


class Ramp(LoadTestShape):
    """Steps of users from LOAD_STAGES, each held for its seconds; then the run stops."""

    def tick(self) -> tuple[int, float] | None:
        elapsed = time.perf_counter() - self.start_time
        for users, seconds in _stages():
            if elapsed < seconds:
                return users, max(1.0, users / 2)
            elapsed -= seconds
        return None


def _record(
    request_type: str,
    name: str,
    response_time: float,
    response: Any = None,
    context: dict[str, Any] | None = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    status = getattr(response, "status_code", None) or 0
    error = None
    if exception is not None and status < 400:
        error = "timeout" if isinstance(exception, requests.Timeout) else type(exception).__name__
    record: dict[str, Any] = {
        "scenario": name,
        "t": time.time(),
        "ms": response_time,
        "status": status,
        "error": error,
        "retry_after": response.headers.get("Retry-After") if response is not None else None,
        **(context or {}),
    }
    _records.append(record)
    runner = _environment.runner if _environment else None
    if runner is not None:
        # The step's users (what `--stages` asked for), not the count while users spawn:
        # a ramp's in-between counts would each make a step of a request or two.
        record["users"] = runner.target_user_count or runner.user_count
        limit = int(os.environ.get("LOAD_MAX_REQUESTS", "0"))
        if limit and len(_records) >= limit:
            runner.quit()


_environment: Environment | None = None


def _on_init(environment: Environment, **_: Any) -> None:
    global _environment
    _environment = environment


def _write_records(environment: Environment, **_: Any) -> None:
    path = os.environ.get("LOAD_RECORDS")
    if path:
        Path(path).write_text(json.dumps(_records))


# Locust's event hooks are untyped: registered by call (a decorator would untype them).
events.request.add_listener(_record)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write_records)  # type: ignore[no-untyped-call]


class Scenarios(HttpUser):
    """What a user of the platform does: a session of `auto` turns and the routes around it."""

    abstract = True
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {os.environ['LOAD_API_KEY']}"
        self.session_id = f"load-{uuid.uuid4().hex[:12]}"
        self.user_id = f"loaduser-{uuid.uuid4().hex[:8]}"
        global _chat_model
        if _chat_model is None:
            listed = self.client.get("/v1/models", name="models").json()
            chat = [m["id"] for m in listed["data"] if m.get("kind") == "chat"]
            _chat_model = next((m for m in chat if m != "auto"), chat[0])
        # 409: another user made it first.
        with self.client.post(
            "/v1/collections", json={"name": UPLOAD_COLLECTION}, catch_response=True,
            name="collection",
        ) as made:  # fmt: skip
            if made.status_code in (200, 201, 409):
                made.success()

    def _post(self, name: str, path: str, **kwargs: Any) -> None:
        with self.client.post(path, name=name, timeout=TIMEOUT_S, catch_response=True, **kwargs):
            pass

    def auto_chat(self) -> None:
        intent = random.choice(list(QUESTIONS))
        body = {
            "model": "auto",
            "session_id": self.session_id,
            "user": self.user_id,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": random.choice(QUESTIONS[intent])}],
        }
        self._post(f"auto:{intent}", "/v1/chat/completions", json=body)

    def stream_chat(self) -> None:
        body = {
            "model": _chat_model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": random.choice(QUESTIONS["chat"])}],
        }
        started = time.perf_counter()
        first_token: float | None = None
        tokens = 0
        with self.client.post(
            "/v1/chat/completions", json=body, stream=True, name="stream", timeout=TIMEOUT_S,
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                return
            try:
                for line in response.iter_lines(decode_unicode=True):
                    if not line or not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        tokens = chunk["usage"].get("completion_tokens", tokens)
                    for choice in chunk.get("choices", []):
                        if choice.get("delta", {}).get("content") and first_token is None:
                            first_token = time.perf_counter()
            except requests.RequestException as exc:
                response.failure(f"stream cut: {type(exc).__name__}")
                return
            # The whole stream, not the headers, is the latency of a streamed answer.
            response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            if first_token is not None:
                generating = time.perf_counter() - first_token
                context = response.request_meta["context"]
                context["ttft_ms"] = (first_token - started) * 1000
                context["tokens"] = tokens
                context["tokens_per_s"] = tokens / generating if generating > 0 else None

    def embeddings(self) -> None:
        body = {"model": "text-embedding-3-small", "input": EMBED_INPUTS}
        self._post("embeddings", "/v1/embeddings", json=body)

    def search(self) -> None:
        body = {"query": random.choice(SEARCH_QUERIES), "k": 5}
        self._post("search", "/v1/collections/wiki/search", json=body)

    def image(self) -> None:
        body = {"prompt": "a red dress", "n": 1, "size": "256x256"}
        self._post("image", "/v1/images/generations", json=body)

    def upload(self) -> None:
        text = f"# Note {uuid.uuid4().hex[:8]}\n\nThe load test wrote this note at {time.time()}."
        files = {"file": ("note.md", text.encode(), "text/markdown")}
        self._post("upload", f"/v1/collections/{UPLOAD_COLLECTION}/documents", files=files)


# How often users do each, relative to the others.
WEIGHTS: dict[Callable[[Scenarios], None], int] = {
    Scenarios.auto_chat: 6,
    Scenarios.stream_chat: 3,
    Scenarios.search: 2,
    Scenarios.embeddings: 1,
    Scenarios.image: 1,
    Scenarios.upload: 1,
}


class PlatformUser(Scenarios):
    """Users as they mix the scenarios (`make load`, `make soak`)."""

    # Locust's class attribute, read once by its metaclass: each scenario `weight` times.
    tasks = [scenario for scenario, weight in WEIGHTS.items() for _ in range(weight)]  # noqa: RUF012


_user_numbers = itertools.count()


class EveryScenarioUser(Scenarios):
    """Each user starts at its own scenario and takes them in turn: a short run covers all."""

    wait_time = constant(0.5)

    def on_start(self) -> None:
        super().on_start()
        self.turn = next(_user_numbers)

    @task
    def next_scenario(self) -> None:
        scenarios = [
            self.auto_chat, self.stream_chat, self.search, self.embeddings, self.image,
            self.upload,
        ]  # fmt: skip
        scenarios[self.turn % len(scenarios)]()
        self.turn += 1
