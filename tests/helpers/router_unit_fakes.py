"""Test doubles of router_svc's unit tests: every upstream behind one httpx mock transport,
and a keyword embedder standing in for MiniLM where the classifier's quality is not the point.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from common.http_client import ServiceClient
from common.retry import RetryPolicy
from common.upstreams import Upstreams

__all__ = ["Call", "FakeUpstreams", "KeywordEmbedder"]

SERVICES = ("memory_svc", "rag_svc", "reasoning_svc", "creative_svc", "tools_svc", "moe_svc")


@dataclass
class Call:
    service: str
    path: str
    body: Any
    started: float
    ended: float = 0.0


@dataclass
class FakeUpstreams:
    """Scripted upstreams. `down`: services refusing connections; `overloaded`: services
    shedding every request (503 `overloaded`, Retry-After 4); `delays`: seconds per service."""

    down: set[str] = field(default_factory=set)
    overloaded: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)
    moe_reply: str = "Hello from the model."
    # rag_svc's `finish_reason` ("length": its answer was cut by max_tokens).
    rag_finish_reason: str = "stop"
    tool_error: str | None = None
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def upstreams(self) -> Upstreams:
        transport = httpx.MockTransport(self.handle)
        return Upstreams(
            {
                name: ServiceClient(
                    name, f"http://{name}", transport=transport, retry=RetryPolicy(max_retries=0)
                )
                for name in SERVICES
            }
        )

    def called(self, service: str) -> list[Call]:
        return [c for c in self.calls if c.service == service]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        service = request.url.host
        body = json.loads(request.content) if request.content else None
        call = Call(service, request.url.path, body, time.perf_counter())
        self.calls.append(call)
        if service in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if service in self.overloaded:
            error = {"message": "overloaded", "type": "service_unavailable", "code": "overloaded"}
            return httpx.Response(503, json={"error": error}, headers={"Retry-After": "4"})
        await asyncio.sleep(self.delays.get(service, 0.0))
        try:
            if service == "memory_svc" and request.method == "GET":
                return self.memory_page(request.url.path, int(request.url.params["limit"]))
            response: httpx.Response = getattr(self, service)(request.url.path, body)
            return response
        finally:
            call.ended = time.perf_counter()

    # --- one method per service ---------------------------------------------------------

    def memory_page(self, path: str, limit: int) -> httpx.Response:
        stored = self.sessions.get(path.split("/")[3], [])
        newest_first = [
            {"id": m["id"], "seq": i + 1, "role": m["role"], "content": m["content"]}
            for i, m in reversed(list(enumerate(stored)))
        ][:limit]
        return httpx.Response(200, json={"object": "list", "data": newest_first, "has_more": False})

    def memory_svc(self, path: str, body: Any) -> httpx.Response:
        if path.endswith("/memories/extract"):  # one fact a text, as memory_svc words them
            facts = [f"The user said: {t}" for t in body["texts"]]
            return httpx.Response(200, json={"facts": facts, "stored": [], "dropped": []})
        sid = path.split("/")[3]
        stored = self.sessions.setdefault(sid, [])
        if path.endswith("/messages"):
            new = [m for m in body["messages"] if m.get("id") not in {s.get("id") for s in stored}]
            stored.extend(new)
            data = [
                {
                    "id": m["id"],
                    "seq": i + 1,
                    "session_id": sid,
                    "role": m["role"],
                    "content": m["content"],
                    "created_at": 0.0,
                    "tokens": 1,
                }
                for i, m in enumerate(new)
            ]
            return httpx.Response(201, json={"object": "list", "data": data})
        messages = [{"role": m["role"], "content": m["content"]} for m in stored]
        return httpx.Response(
            200,
            json={
                "session_id": sid,
                "messages": [{"role": "system", "content": "Stored system."}, *messages],
                "budget_tokens": body["budget_tokens"],
                "total_tokens": 10,
                "token_counter": "fake",
                "recent_messages": len(messages),
                "dropped": 0,
            },
        )

    def rag_svc(self, path: str, body: Any) -> httpx.Response:
        source = {
            "number": 1,
            "doc_id": "bell",
            "chunk_id": "bell#0",
            "score": 0.9,
            "text": "Bell was granted the telephone patent in 1876.",
            "metadata": {},
        }
        citation = {
            "number": 1,
            "sentence": "Bell patented it in 1876 [1].",
            "valid": True,
            "supported": True,
            "lexical": 0.8,
            "semantic": 0.9,
        }
        return httpx.Response(
            200,
            json={
                "answer": "Alexander Graham Bell patented the telephone in 1876 [1].",
                "citations": [citation],
                "verified": True,
                "sources": [source],
                "retrieval": {"used": True, "queries": [body["question"]]},
                "model": "fake-moe",
                "finish_reason": self.rag_finish_reason,
            },
        )

    def reasoning_svc(self, path: str, body: Any) -> httpx.Response:
        strategy = "pal" if body["strategy"] == "auto" else body["strategy"]
        return httpx.Response(
            200,
            json={
                "answer": "7 cows",
                "strategy": strategy,
                "requested_strategy": body["strategy"],
                "finished": True,
                "stop_reason": "answer",
                "trace": [{"index": 0, "kind": "answer", "content": "7 cows"}],
                "tool_calls": [
                    {
                        "tool": "python",
                        "arguments": {"code": "print(7)"},
                        "output": {"stdout": "7\n"},
                        "duration_ms": 3.0,
                    }
                ],
                "usage": {
                    "model_calls": 1,
                    "prompt_tokens": 5,
                    "completion_tokens": 5,
                    "total_tokens": 10,
                },
                "model": "fake-moe",
                "latency_ms": 12.0,
            },
        )

    def creative_svc(self, path: str, body: Any) -> httpx.Response:
        ideas = [
            {
                "description": f"A {body['task'].split()[-1]} in soft leather",
                "visual_concept": "studio shot",
                "why": "classic",
                "image": "iVBORw0KGgo=",
            }
        ]
        return httpx.Response(200, json={"ideas": ideas * body["n"], "critique": "Looks fine."})

    def tools_svc(self, path: str, body: Any) -> httpx.Response:
        tool = path.split("/")[3]
        outputs = {
            "calculator": {
                "expression": body["arguments"].get("expression"),
                "result": "391",
                "exact": True,
            },
            "python": {"stdout": "1024\n", "stderr": "", "exit_code": 0},
            "datetime_now": {
                "iso": "2030-01-01T12:00:00+00:00",
                "timezone": "UTC",
                "utc_offset": "+00:00",
                "date": "2030-01-01",
                "time": "12:00:00",
                "weekday": "Tuesday",
            },
            "unit_convert": {
                "value": 72.0,
                "from_unit": "degF",
                "to_unit": "degC",
                "result_text": "22.2222",
                "result": 22.2222,
                "exact": False,
            },
        }
        error = self.tool_error
        output = None if error else outputs.get(tool)
        return httpx.Response(
            200, json={"tool": tool, "output": output, "error": error, "duration_ms": 2.0}
        )

    def moe_svc(self, path: str, body: Any) -> httpx.Response:
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "fake-moe"}]})
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_ByteStream(self._chunks(body["model"])),
            )
        return httpx.Response(
            200,
            json={
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.moe_reply},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    def _chunks(self, model: str) -> list[bytes]:
        words = self.moe_reply.split(" ")
        pieces = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        events = [
            {"model": model, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces
        ]
        return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


class _ByteStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


KEYWORDS = {
    "factual": ("who", "invented", "capital", "history", "documents"),
    "reasoning": ("farmer", "legs", "plan", "compare", "puzzle"),
    "creative": ("poem", "draw", "story", "haiku", "slogan"),
    "tool": ("convert", "run", "calculate", "time", "celsius"),
    "chat": ("hi", "hello", "thanks", "bye", "name"),
}


class KeywordEmbedder:
    """One dimension per intent, counting its keywords; stands in for MiniLM in API tests."""

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(KEYWORDS)), dtype=np.float32)
        for row, text in enumerate(texts):
            words = text.lower().replace("?", " ").replace("!", " ").split()
            for col, keys in enumerate(KEYWORDS.values()):
                out[row, col] = sum(words.count(k) for k in keys)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
