"""Scripted stand-ins for the gateway's upstreams in its integration tests.

A TEST DOUBLE, not a service: `python -m tests.helpers.gateway_fakes`
serves on `FAKE_PORT`, in one process, what the gateway calls:

- router_svc `POST /v1/dispatch` (plain and `stream`): a factual answer that
  cites `[1]` (a real source) and `[7]` (none); a message containing `slow`
  streams a delta every 50 ms for 10 s and counts in `GET /state` whether
  the stream was cancelled.
- moe_svc `GET /v1/models`, `POST /v1/chat/completions` (plain and `stream`),
  404 `model_not_found` for another model than `fake-moe`.
- rag_svc `POST /v1/embeddings`, `POST /v1/collections/{name}/documents` (JSON or multipart).
- creative_svc `POST /v1/images/generations` (a 1x1 PNG, in creative_svc's contract).
- memory_svc `POST|GET /v1/feedback`.
- `GET /requests` lists `{path, body}` of the calls, `GET /state` counters,
  `GET /seen` every call as it arrived: method, raw path, query string and the
  caller headers (`X-Tenant-ID`, `X-Key-ID`, `X-Key-Role`, `X-Key-Scopes`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from common.caller import KEY_ID_HEADER, ROLE_HEADER, SCOPES_HEADER, TENANT_HEADER

MODEL = "fake-moe"
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
    "hKmMIQAAAABJRU5ErkJggg=="
)
ANSWER = "Bell patented the telephone in 1876 [1]. He was born in Edinburgh [7]."

app = FastAPI()
requests: list[dict[str, Any]] = []
feedback: list[dict[str, Any]] = []
state = {"slow_started": 0, "slow_cancelled": 0, "slow_finished": 0}
seen: list[dict[str, Any]] = []
_OWN_PATHS = ("/healthz", "/readyz", "/requests", "/state", "/seen")


def _pipeline() -> dict[str, Any]:
    return {
        "intent": "factual",
        "confidence": 0.9,
        "scores": {"factual": 0.9, "chat": 0.05, "reasoning": 0.03, "tool": 0.01, "creative": 0.01},
        "fallback": False,
        "plan": {"intent": "factual", "description": "rag", "steps": []},
        "steps": [
            {"name": "rag.answer", "service": "rag_svc", "status": "ok", "optional": False,
             "latency_ms": 12.0, "detail": {}}
        ],
        "sourced": True,
        "sources": [
            {"number": 1, "doc_id": "bell", "chunk_id": "bell-0", "score": 0.8,
             "text": "Alexander Graham Bell patented the telephone in 1876.",
             "metadata": {"title": "Telephone"}, "collection": "wiki", "title": "Telephone"}
        ],
        "citations": [
            {"number": 1, "sentence": "Bell patented the telephone in 1876 [1].", "valid": True,
             "supported": True, "lexical": 0.8, "semantic": 0.9},
            {"number": 7, "sentence": "He was born in Edinburgh [7].", "valid": False,
             "supported": False, "lexical": 0.0, "semantic": 0.0},
        ],
        "tool_calls": [],
        "reasoning": None,
        "images": [],
        "notes": [],
        "model": MODEL,
        "latency_ms": 20.0,
    }  # fmt: skip


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


class RecordArrivals:
    """Plain ASGI (streams pass untouched): notes each call before the app sees it."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OWN_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope["headers"]}  # fmt: skip
            caller = {h: headers.get(h.lower()) for h in (TENANT_HEADER, KEY_ID_HEADER,
                                                           ROLE_HEADER, SCOPES_HEADER)}  # fmt: skip
            seen.append({"method": scope["method"],
                         "raw_path": scope.get("raw_path", b"").decode("latin-1"),
                         "query": scope.get("query_string", b"").decode("latin-1"),
                         "caller": caller,
                         "model_version": headers.get("x-model-version")})  # fmt: skip
        await self.inner(scope, receive, send)


app.add_middleware(RecordArrivals)


@app.get("/seen")
async def arrivals() -> list[dict[str, Any]]:
    return seen


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.get("/requests")
async def recorded() -> list[dict[str, Any]]:
    return requests


@app.get("/state")
async def counters() -> dict[str, int]:
    return state


@app.post("/v1/dispatch")
async def dispatch(request: Request) -> Any:
    body = await request.json()
    requests.append({"path": "/v1/dispatch", "body": body})
    # router_svc's choices: the answer as OpenAI has it.
    _CHOICE = {
        "index": 0,
        "message": {"role": "assistant", "content": ANSWER},
        "finish_reason": "stop",
    }
    text = body["messages"][-1]["content"]
    did = f"dsp-{len(requests)}"
    if not body.get("stream"):
        return {
            "id": did,
            "object": "router.dispatch",
            "session_id": body.get("session_id"),
            "message": {"role": "assistant", "content": ANSWER},
            "choices": [_CHOICE],
            "pipeline": _pipeline(),
        }

    async def events() -> AsyncIterator[str]:
        pipeline = _pipeline()
        route = {
            key: pipeline[key] for key in ("intent", "confidence", "scores", "fallback", "plan")
        }
        yield _sse({"type": "route", **route, "threshold": 0.5})
        if "slow" in text:
            state["slow_started"] += 1
            try:
                for i in range(200):
                    yield _sse({"type": "delta", "content": f"w{i} "})
                    await asyncio.sleep(0.05)
                state["slow_finished"] += 1
            except (asyncio.CancelledError, GeneratorExit):
                state["slow_cancelled"] += 1
                raise
        yield _sse({"type": "step", "step": _pipeline()["steps"][0]})
        for piece in (
            "Bell patented the telephone ",
            "in 1876 [1]. ",
            "He was born in Edinburgh [7].",
        ):
            yield _sse({"type": "delta", "content": piece})
        message = {"role": "assistant", "content": ANSWER}
        done = {"type": "done", "id": did, "session_id": body.get("session_id")}
        yield _sse({**done, "message": message, "choices": [_CHOICE], "pipeline": _pipeline()})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    card = {"id": MODEL, "object": "model", "created": 1, "owned_by": "llm-platform"}
    return {"object": "list", "data": [card]}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Any:
    body = await request.json()
    requests.append({"path": "/v1/chat/completions", "body": body})
    if body.get("model") != MODEL:
        error = {"message": f"The model '{body.get('model')}' does not exist.", "type":
                 "not_found_error", "param": "model", "code": "model_not_found",
                 "service": "moe_svc", "request_id": None}  # fmt: skip
        return JSONResponse({"error": error}, status_code=404)
    head = {"id": "chatcmpl-moe", "created": int(time.time()), "model": MODEL}
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    if not body.get("stream"):
        choice = {"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                  "finish_reason": "stop", "logprobs": None}  # fmt: skip
        return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}

    async def events() -> AsyncIterator[str]:
        chunk = {**head, "object": "chat.completion.chunk"}
        for i, piece in enumerate(("Hello", " there")):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            yield _sse({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        end = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield _sse({**chunk, "choices": [end]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**chunk, "choices": [], "usage": usage})
        yield _sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await request.json()
    requests.append({"path": "/v1/embeddings", "body": body})
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.25, 0.125]}
            for i, _ in enumerate(texts)]  # fmt: skip
    usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
    return {"object": "list", "data": data, "model": "all-MiniLM-L6-v2", "usage": usage}


@app.post("/v1/collections/{name}/documents")
async def documents(name: str, request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("multipart/"):
        form = await request.form()
        upload = form["file"]
        assert isinstance(upload, UploadFile), "the file goes as a multipart file part"
        text = (await upload.read()).decode()
        requests.append({"path": f"/documents/{name}", "body": {"file": text}})
        return {"ids": [str(upload.filename)], "chunks": 1, "duplicates": []}
    body = await request.json()
    requests.append({"path": f"/documents/{name}", "body": body})
    ids = [d.get("id") or f"doc-{i}" for i, d in enumerate(body["documents"])]
    return {"ids": ids, "chunks": len(ids), "duplicates": []}


@app.post("/v1/images/generations")
async def images(request: Request) -> dict[str, Any]:
    body = await request.json()
    requests.append({"path": "/v1/images/generations", "body": body})
    n = int(body.get("n") or 1)
    reading = {"subject": "handbag", "style": "grayscale", "nearest_class": "bag",
               "similarity": 0.9, "in_domain": True}  # fmt: skip
    return {"created": int(time.time()), "data": [{"b64_json": PNG_1X1}] * n,
            "model": body.get("model") or "diffusion", "seed": 1, "steps": 25,
            "guidance_scale": 3.0, "sampler": "ddim", "prompt_reading": reading}  # fmt: skip


@app.post("/v1/feedback", status_code=201)
async def post_feedback(request: Request) -> dict[str, Any]:
    body = await request.json()
    item = {"id": f"fb-{len(feedback)}", **body}
    feedback.append(item)
    return item


@app.get("/v1/feedback")
async def get_feedback(session_id: str | None = None) -> dict[str, Any]:
    data = [f for f in feedback if session_id in (None, f["session_id"])]
    return {"object": "list", "data": data, "has_more": False}


# moe_svc's counters as the Report page's live view reads them: tokens grow by 10 a read.
generated_tokens = [0]


@app.get("/metrics")
async def metrics() -> PlainTextResponse:
    generated_tokens[0] += 10
    return PlainTextResponse(f"moe_generated_tokens_total {generated_tokens[0]}.0\n")


@app.get("/v1/experts/stats")
async def expert_stats() -> dict[str, Any]:
    step = generated_tokens[0]
    return {"num_experts": 8, "counts": [[step * (e + 1) for e in range(8)] for _ in range(2)]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_PORT"]), log_level="warning")
