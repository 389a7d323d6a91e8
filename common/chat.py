"""moe_svc's OpenAI chat completions, as every service that asks the core model calls them.

One non-streamed completion per call, the model resolved from `/v1/models` once
when none is configured, `stop` markers enforced on the text even when the
server ignores them, and the token counts the server reports (estimated when it
reports none). Anything that speaks the OpenAI protocol (vLLM included) works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from common.errors import BadUpstreamResponse
from common.http_client import ServiceClient

__all__ = ["ChatClient", "Completion", "Message", "estimate_tokens", "first_expert_usage"]

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # The counts are estimates: the server reported no usage.
    estimated: bool = False
    # moe_svc's extension when asked (`return_experts`): tokens per layer and expert,
    # {"per_layer": [[...], ...]}; None from servers without it.
    experts: dict[str, Any] | None = None
    # Why the text ended, as OpenAI says it: "length" when max_tokens cut it.
    finish_reason: str = "stop"


def first_expert_usage(body: object) -> dict[str, Any] | None:
    """The first choice's `experts` of a moe_svc answer or final chunk, when well formed."""
    experts = body.get("experts") if isinstance(body, dict) else None
    if not isinstance(experts, list) or not experts or not isinstance(experts[0], dict):
        return None
    per_layer = experts[0].get("per_layer")
    if not isinstance(per_layer, list) or not per_layer:
        return None
    return {"per_layer": per_layer}


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ChatClient:
    """Chat completions from one upstream; `name` is the model ("" until resolved)."""

    def __init__(
        self,
        client: ServiceClient,
        model: str = "",
        timeout_s: float = 60.0,
        *,
        extensions: bool = True,
    ) -> None:
        """`extensions`: the server is moe_svc, which has the platform's extensions
        (`return_experts`); False leaves them out of requests to another server."""
        self._client = client
        self.name = model
        self.timeout_s = timeout_s
        self.extensions = extensions

    @property
    def upstream(self) -> str:
        return self._client.upstream

    async def resolve(self, timeout_s: float | None = None) -> str:
        """The configured model, else the first the upstream lists (looked up once)."""
        if not self.name:
            listing = await self._client.get_json(
                "/v1/models", timeout_s=timeout_s or self.timeout_s
            )
            models = listing.get("data") if isinstance(listing, dict) else None
            try:
                self.name = str(models[0]["id"])  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise BadUpstreamResponse(self._client.upstream, "lists no models") from None
        return self.name

    def with_model(self, model: str) -> ChatClient:
        return ChatClient(self._client, model, self.timeout_s, extensions=self.extensions)

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        timeout_s: float | None = None,
        return_experts: bool = False,
        response_format: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Completion:
        """One completion; `timeout_s` overrides the client's timeout for this call.

        `return_experts` asks moe_svc for the experts the answer used (other servers
        ignore the field); they come back as `Completion.experts`. `response_format`
        is OpenAI's (`json_object`, `json_schema`): moe_svc decodes under that grammar.
        `grammar` (Lark) is moe_svc's extension; it is not sent to another engine,
        whose reply is then free text.
        """
        timeout_s = timeout_s or self.timeout_s
        payload: dict[str, Any] = {
            "model": await self.resolve(timeout_s),
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }
        if stop:
            payload["stop"] = stop
        if return_experts and self.extensions:
            payload["return_experts"] = True
        if response_format is not None:
            payload["response_format"] = response_format
        if grammar is not None and self.extensions:
            payload["grammar"] = {"syntax": "lark", "definition": grammar}
        body = await self._client.post_json("/v1/chat/completions", payload, timeout_s=timeout_s)
        try:
            text = str(body["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise BadUpstreamResponse(
                self._client.upstream, "answered without choices[0].message.content"
            ) from None
        # A server that ignores `stop` still must not let the model run past a marker.
        for marker in stop or ():
            cut = text.find(marker)
            if cut >= 0:
                text = text[:cut]
        experts = first_expert_usage(body)
        finish = "length" if body["choices"][0].get("finish_reason") == "length" else "stop"
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict) and usage.get("completion_tokens"):
            return Completion(
                text,
                int(usage.get("prompt_tokens") or 0),
                int(usage["completion_tokens"]),
                experts=experts,
                finish_reason=finish,
            )
        prompt = "\n".join(m.get("content", "") for m in messages)
        return Completion(
            text,
            estimate_tokens(prompt),
            estimate_tokens(text),
            estimated=True,
            experts=experts,
            finish_reason=finish,
        )
