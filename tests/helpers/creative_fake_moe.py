"""A scripted stand-in for moe_svc in creative_svc's integration tests (a TEST DOUBLE).

`python -m tests.helpers.creative_fake_moe` serves on `FAKE_MOE_PORT`:
`GET /healthz`, `GET /v1/models`, and `POST /v1/chat/completions` answering
the replies in `FAKE_MOE_REPLIES` (a JSON list) in turn, the last repeating.
`GET /requests` lists the chat requests it received.
"""

from __future__ import annotations

import json
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from tests.helpers.openai_fakes import chat_completion

MODEL = "fake-moe"
REPLIES: list[str] = json.loads(os.environ.get("FAKE_MOE_REPLIES", '["I am a scripted model."]'))

app = FastAPI()
requests: list[dict[str, Any]] = []


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/requests")
async def recorded() -> list[dict[str, Any]]:
    return requests


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    requests.append(body)
    reply = REPLIES[min(len(requests), len(REPLIES)) - 1]
    usage = {"prompt_tokens": 10, "completion_tokens": len(reply.split())}
    model = body.get("model", MODEL)
    return chat_completion(reply, model, completion_id=f"chatcmpl-{len(requests)}", usage=usage)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_MOE_PORT"]), log_level="warning")
