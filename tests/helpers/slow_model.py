"""A slow, counting stand-in for moe_svc's chat API, to watch a caller stop calling it.

A TEST DOUBLE, not a service: `python -m tests.helpers.slow_model` serves on
`FAKE_PORT`. `POST /v1/chat/completions` (not streamed) waits `delay_s`, then
answers `reply` and reports the max_tokens it was allowed as its completion
tokens (a model that writes all it may). The wait is cancelled when the caller
leaves. `PUT /config {"delay_s", "reply"}` sets both and clears the counts;
`GET /calls` tells the calls started, answered and abandoned (their caller left
before the answer) and the max_tokens of each.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

from common.disconnect import cancel_on_disconnect
from tests.helpers.openai_fakes import chat_completion

MODEL = "slow-model"

app = FastAPI()
config: dict[str, Any] = {"delay_s": 0.0, "reply": "Answer: 7"}
calls: dict[str, Any] = {"started": 0, "answered": 0, "abandoned": 0, "max_tokens": []}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.put("/config")
async def configure(body: dict[str, Any]) -> dict[str, Any]:
    config.update(body)
    calls.update(started=0, answered=0, abandoned=0, max_tokens=[])
    return config


@app.get("/calls")
async def counted() -> dict[str, Any]:
    return calls


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}


async def _answer(body: dict[str, Any]) -> dict[str, Any]:
    try:
        await asyncio.sleep(float(config["delay_s"]))
    except asyncio.CancelledError:
        calls["abandoned"] += 1
        raise
    calls["answered"] += 1
    tokens = int(body.get("max_tokens") or 16)
    usage = {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}
    return chat_completion(
        str(config["reply"]), MODEL, completion_id=f"chatcmpl-{calls['answered']}", usage=usage
    )


@app.post("/v1/chat/completions", response_model=None)
async def chat(body: dict[str, Any], request: Request) -> Any:
    calls["started"] += 1
    calls["max_tokens"].append(body.get("max_tokens"))
    return await cancel_on_disconnect(request, _answer(body))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_PORT"]), log_level="warning")
