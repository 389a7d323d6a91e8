"""Server-sent events as OpenAI streams them: one JSON object per `data:` line."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from common.errors import OVERLOADED

__all__ = ["error_event", "event"]


def event(model: BaseModel) -> str:
    """One `data:` line of a response model (nulls OpenAI leaves out are left out)."""
    data = model.model_dump(mode="json")
    # OpenAI sends `usage` only when asked, and our extension only when it has a value
    for key in ("usage", "experts"):
        if data.get(key) is None:
            data.pop(key, None)
    # a delta carries only what it has: no `role: null` after the first chunk, no `id: null`
    # on a tool call's argument fragments
    for choice in data.get("choices", []):
        if "delta" in choice:
            choice["delta"] = _without_nulls(choice["delta"])
    return f"data: {_json_dumps(data)}\n\n"


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _json_dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def error_event(message: str, code: str = "engine_error") -> str:
    """The `data:` payload of an engine failure (or, code `overloaded`, a choice shed from
    the queue) in the middle of a stream."""
    kind = "service_unavailable" if code == OVERLOADED else "server_error"
    error = {"message": message, "type": kind, "code": code}
    return _json_dumps({"error": {**error, "param": None, "service": "moe_svc"}})
