"""A scripted stand-in for moe_svc's OpenAI chat API, for rag_svc's answer tests.

`python -m tests.helpers.rag_fake_moe` serves on `FAKE_MOE_PORT`. Tests
script it with `PUT /script` (a list of `{"contains", "reply"}` rules: the
first rule whose text occurs in the request's messages gives the reply, or
`{"contains", "status"}` to fail with that status) and read what it was asked
with `GET /requests`.
"""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tests.helpers.openai_fakes import chat_completion

MODEL = "fake-moe"

app = FastAPI()
rules: list[dict[str, Any]] = []
requests: list[dict[str, Any]] = []


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "moe_svc"}


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]}


@app.put("/script")
async def script(body: list[dict[str, Any]]) -> dict[str, int]:
    rules[:] = body
    requests.clear()
    return {"rules": len(rules)}


@app.get("/requests")
async def recorded() -> list[dict[str, Any]]:
    return requests


@app.post("/v1/chat/completions", response_model=None)
async def chat(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
    requests.append(body)
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    rule = next((r for r in rules if r["contains"] in text), None)
    if rule is not None and "status" in rule:
        error = {"message": "scripted failure", "type": "server_error", "service": "moe_svc"}
        return JSONResponse({"error": error}, status_code=int(rule["status"]))
    reply = rule["reply"] if rule is not None else "I do not know."
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    model = body.get("model", MODEL)
    return chat_completion(reply, model, completion_id=f"chatcmpl-{len(requests)}", usage=usage)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_MOE_PORT"]), log_level="warning")
