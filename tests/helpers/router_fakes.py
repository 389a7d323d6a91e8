"""Scripted stand-ins for moe_svc and creative_svc in the router and reasoning integration tests.

A TEST DOUBLE, not a service: `python -m tests.helpers.router_fakes` serves
on `FAKE_PORT` until moe_svc's OpenAI API and creative_svc exist.

- moe_svc: `GET /v1/models`, `POST /v1/chat/completions` (plain and `stream`),
  `POST /v1/tokenize` (words). Replies follow the script set with
  `PUT /script`: a list of `{"contains", "reply"}` rules (a list of replies
  is given in turn, the last repeating; `{"contains", "status"}` fails); the
  first rule whose text occurs in the request's messages answers; without
  one the reply is `FAKE_DEFAULT_REPLY`.
- creative_svc: `POST /v1/creative/ideate` -> one idea per `n` with a 1x1 PNG.
- `GET /requests` lists the chat requests, `DELETE /requests` clears them.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from tests.helpers.openai_fakes import chat_completion

MODEL = "fake-moe"
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
    "hKmMIQAAAABJRU5ErkJggg=="
)

app = FastAPI()
rules: list[dict[str, Any]] = []
turns: dict[int, int] = {}
requests: list[dict[str, Any]] = []


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.put("/script")
async def script(body: list[dict[str, Any]]) -> dict[str, int]:
    rules[:] = body
    turns.clear()
    return {"rules": len(rules)}


@app.get("/requests")
async def recorded() -> list[dict[str, Any]]:
    return requests


@app.delete("/requests")
async def clear() -> dict[str, int]:
    n = len(requests)
    requests.clear()
    return {"cleared": n}


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    card = {"id": MODEL, "object": "model", "created": 1_700_000_000, "owned_by": "tests"}
    return {"object": "list", "data": [card]}


@app.post("/v1/tokenize")
async def tokenize(body: dict[str, Any]) -> dict[str, Any]:
    words = str(body.get("text", "")).split()
    return {"tokens": list(range(len(words))), "count": len(words)}


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    for number, rule in enumerate(rules):
        if rule["contains"] in text:
            if "status" in rule:
                return {"status": int(rule["status"])}
            reply = rule["reply"]
            if isinstance(reply, list):
                turn = turns.get(number, 0)
                turns[number] = turn + 1
                reply = reply[min(turn, len(reply) - 1)]
            return {"reply": str(reply)}
    return {"reply": os.environ.get("FAKE_DEFAULT_REPLY", "I am a scripted model.")}


FAKE_EXPERTS = [[2, 1, 1], [0, 3, 1]]


@app.post("/v1/chat/completions", response_model=None)
async def chat(body: dict[str, Any]) -> dict[str, Any] | JSONResponse | StreamingResponse:
    requests.append(body)
    outcome = _reply(body)
    if "status" in outcome:
        error = {"message": "scripted failure", "type": "server_error", "service": "moe_svc"}
        return JSONResponse({"error": error}, status_code=outcome["status"])
    reply = outcome["reply"]
    model = body.get("model", MODEL)
    usage = {"prompt_tokens": 7, "completion_tokens": max(1, len(reply.split()))}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    # moe_svc's extension: experts per layer, when asked (two layers of three experts here).
    experts = {"experts": [{"per_layer": FAKE_EXPERTS}]} if body.get("return_experts") else {}
    if body.get("stream"):

        async def chunks() -> AsyncIterator[str]:
            words = reply.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else f" {word}"
                chunk = {
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": piece}}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            final = {"object": "chat.completion.chunk", "model": model, "choices": []}
            yield f"data: {json.dumps({**final, **experts})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")
    answer = chat_completion(reply, model, completion_id=f"chatcmpl-{len(requests)}", usage=usage)
    return {**answer, **experts}


@app.post("/v1/creative/ideate")
async def ideate(body: dict[str, Any]) -> dict[str, Any]:
    task = str(body["task"])
    ideas = [
        {
            "description": f"Idea {i + 1} for: {task}",
            "visual_concept": "a clean product shot",
            "why": "it shows the object plainly",
            "image": PNG_1X1,
        }
        for i in range(int(body.get("n", 1)))
    ]
    return {"ideas": ideas, "critique": "Idea 1 reads best."}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_PORT"]), log_level="warning")
