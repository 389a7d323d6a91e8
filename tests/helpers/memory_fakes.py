"""Fake upstreams of memory_svc's integration tests: `python -m tests.helpers.memory_fakes`.

A TEST DOUBLE, not a service: it stands in for rag_svc's `/v1/embeddings` and
moe_svc's `/v1/chat/completions`, `/v1/models` and `/v1/tokenize` until those
exist, so that memory_svc's own behaviour (merging, search, summaries,
fallbacks) can be tested against real HTTP. Redis is never faked.

- embeddings: the hashing trick over lower-cased words (384-d, unit length):
  texts with the same words get the same vector; shared words make them close.
- chat: a "summary" made of the first words of each transcript line, at most
  `max_tokens` words, prefixed with `FAKE SUMMARY (n lines):`. Asked for the
  `user_facts` JSON schema, it answers `{"facts": [...]}`: every statement the
  schema's enum offers (else "The user said: <s>" for each sentence of the last
  message), a repeat of the first, and an invented "The user owns a yacht." (what
  memory_svc's checks must drop; a real engine keeps to the enum).
- tokenize: the real tokenizer when FAKE_TOKENIZER names a tokenizer.json.
- `GET /calls` counts the calls per endpoint; FAKE_CHAT_DELAY_S slows chat.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import zlib
from collections import Counter
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI

from tests.helpers.openai_fakes import chat_completion

DIM = 384

app = FastAPI()
calls: Counter[str] = Counter()
_tokenizer: Any = None


def embed(text: str) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float64)
    for word in re.findall(r"\w+", text.lower()):
        digest = zlib.crc32(word.encode())
        vector[digest % DIM] += 1.0 if (digest >> 16) & 1 else -1.0
    norm = np.linalg.norm(vector)
    return (vector / norm if norm else vector).tolist()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/calls")
async def get_calls() -> dict[str, int]:
    return dict(calls)


@app.post("/v1/embeddings")
async def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    calls["embeddings"] += 1
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return {
        "object": "list",
        "model": body.get("model"),
        "data": [
            {"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "fake-moe", "object": "model"}]}


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> dict[str, Any]:
    calls["chat"] += 1
    await asyncio.sleep(float(os.environ.get("FAKE_CHAT_DELAY_S", "0")))
    prompt = body["messages"][-1]["content"]
    schema = (body.get("response_format") or {}).get("json_schema") or {}
    if schema.get("name") == "user_facts":
        items = schema["schema"]["properties"]["facts"]["items"]
        said = items.get("enum") or [
            f"The user said: {s.strip()}" for s in re.split(r"(?<=[.!?])\s+", prompt)
        ]
        facts = [*said, said[0], "The user owns a yacht."]
        return chat_completion(json.dumps({"facts": facts}), body["model"], completion_id="f")
    lines = [ln for ln in prompt.splitlines() if re.match(r"^(user|assistant|tool): ", ln)]
    words = [w for ln in lines for w in ln.split()[:4]]
    limit = max(1, int(body.get("max_tokens") or 64) // 2)
    text = f"FAKE SUMMARY ({len(lines)} lines): " + " ".join(words[:limit])
    return chat_completion(text, body["model"], completion_id="chatcmpl-fake")


@app.post("/v1/tokenize")
async def tokenize(body: dict[str, Any]) -> dict[str, Any]:
    global _tokenizer
    calls["tokenize"] += 1
    if _tokenizer is None:
        from tokenizers import Tokenizer

        _tokenizer = Tokenizer.from_file(os.environ["FAKE_TOKENIZER"])
    ids = _tokenizer.encode(body["text"], add_special_tokens=False).ids
    return {"tokens": ids, "count": len(ids)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FAKE_PORT"]), log_level="warning")
