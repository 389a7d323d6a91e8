"""What the scripted moe_svc stand-ins of the integration tests answer."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["chat_completion"]


def chat_completion(
    reply: str, model: str, *, completion_id: str, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A non-streamed OpenAI `chat.completion` with one choice saying `reply`."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body
