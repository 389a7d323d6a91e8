"""The model the strategies think with: moe_svc's OpenAI chat completions.

Strategies see only the `ChatModel` protocol, so unit tests drive them with
a scripted model and the service with moe_svc (or anything that speaks the
OpenAI protocol, vLLM included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from common.errors import UpstreamError
from common.http_client import ServiceClient

__all__ = ["ChatModel", "Completion", "Message", "MoeChatModel", "estimate_tokens"]

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # The counts are estimates: the server reported no usage.
    estimated: bool = False


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ChatModel(Protocol):
    name: str

    async def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        stop: list[str] | None = None,
    ) -> Completion: ...


class MoeChatModel:
    """One non-streamed chat completion per call; finds its model when none is set."""

    def __init__(self, client: ServiceClient, model: str, timeout_s: float) -> None:
        self._client = client
        self.name = model
        self.timeout_s = timeout_s

    async def resolve(self) -> str:
        if not self.name:
            listing = await self._client.get_json("/v1/models", timeout_s=self.timeout_s)
            models = listing.get("data") if isinstance(listing, dict) else None
            if not models:
                raise self._malformed("lists no models")
            self.name = str(models[0]["id"])
        return self.name

    def with_model(self, model: str) -> MoeChatModel:
        return MoeChatModel(self._client, model, self.timeout_s)

    async def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        stop: list[str] | None = None,
    ) -> Completion:
        payload: dict[str, Any] = {
            "model": await self.resolve(),
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }
        if stop:
            payload["stop"] = stop
        body = await self._client.post_json(
            "/v1/chat/completions", payload, timeout_s=self.timeout_s
        )
        try:
            text = str(body["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise self._malformed("answered without choices[0].message.content") from None
        # Servers that ignore `stop` still must not let the model write the observation.
        for marker in stop or ():
            cut = text.find(marker)
            if cut >= 0:
                text = text[:cut]
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict) and usage.get("completion_tokens"):
            return Completion(
                text, int(usage.get("prompt_tokens") or 0), int(usage["completion_tokens"])
            )
        prompt = "\n".join(m.get("content", "") for m in messages)
        return Completion(text, estimate_tokens(prompt), estimate_tokens(text), estimated=True)

    def _malformed(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"{self._client.upstream} {what}.",
            status_code=502,
            error_type="upstream_error",
            origin=self._client.upstream,
            code="bad_upstream_response",
        )
