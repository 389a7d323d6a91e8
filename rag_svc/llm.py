"""moe_svc's OpenAI chat completions, as rag_svc uses them."""

from __future__ import annotations

from typing import Any

from common.errors import UpstreamError
from common.http_client import ServiceClient

__all__ = ["ChatClient"]


class ChatClient:
    """Asks moe_svc for one non-streamed completion; finds its model when none is set."""

    def __init__(self, client: ServiceClient, model: str, timeout_s: float) -> None:
        self._client = client
        self._model = model
        self.timeout_s = timeout_s

    async def model(self) -> str:
        if not self._model:
            listing = await self._client.get_json("/v1/models")
            models = listing.get("data") if isinstance(listing, dict) else None
            if not models:
                raise self._malformed("lists no models")
            self._model = str(models[0]["id"])
        return self._model

    async def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0
    ) -> str:
        payload: dict[str, Any] = {
            "model": await self.model(),
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }
        body = await self._client.post_json(
            "/v1/chat/completions", payload, timeout_s=self.timeout_s
        )
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._malformed("answered without choices[0].message.content") from None
        return str(content or "").strip()

    def _malformed(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"{self._client.upstream} {what}.",
            status_code=502,
            error_type="upstream_error",
            origin=self._client.upstream,
            code="bad_upstream_response",
        )
