"""The calls the plans make, one method per upstream endpoint.

Each returns the upstream's parsed answer or raises a `ServiceError` (the
shared client's errors; a malformed answer is a 502 `UpstreamError`); the
dispatcher decides what a failure means for the plan.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter, ValidationError

from common.chat import ChatClient, first_expert_usage
from common.contracts.memory import ContextResponse
from common.contracts.openai import ChatChoice, ChatChunkChoice
from common.contracts.rag import AnswerResponse
from common.contracts.reasoning import ReasonRequest, ReasonResponse
from common.contracts.tools import InvokeResponse
from common.errors import BadUpstreamResponse, UpstreamError
from common.http_client import ServiceClient
from common.models import ModelRegistry
from common.streaming import sse_data
from common.upstreams import Upstreams

__all__ = ["Backends"]

_CHOICES = TypeAdapter(list[ChatChoice])
_CHUNK_CHOICES = TypeAdapter(list[ChatChunkChoice])
# rag_svc's `AnswerRequest.max_tokens` range.
RAG_MIN_MAX_TOKENS, RAG_MAX_MAX_TOKENS = 16, 4096


class Backends:
    def __init__(
        self, upstreams: Upstreams, model: str = "", models: ModelRegistry | None = None
    ) -> None:
        """`models` sends each model id to its server (moe_svc without one)."""
        self.upstreams = upstreams
        self.models = models
        self._chat = (
            models.chat(model) if models is not None else ChatClient(upstreams["moe_svc"], model)
        )

    def server(self, model: str) -> str:
        """The upstream that answers `model`: "moe_svc" or "engine:<name>"."""
        return self.models.route(model).upstream if self.models is not None else "moe_svc"

    def _route(self, body: dict[str, Any]) -> tuple[ServiceClient, dict[str, Any]]:
        """The server of `body`'s model, and the body as that server takes it."""
        if self.models is None:
            return self.upstreams["moe_svc"], body
        route = self.models.route(str(body.get("model") or ""))
        return route.client, route.request_body(body)

    # --- memory_svc ----------------------------------------------------------------------

    async def append_messages(
        self, session_id: str, messages: list[dict[str, Any]], user: str | None, timeout_s: float
    ) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {"messages": messages}
        if user:
            payload["user_id"] = user
        # Ids on every message make the append idempotent, so a retry cannot duplicate it.
        body = await self.upstreams["memory_svc"].post_json(
            f"/v1/sessions/{session_id}/messages", payload, timeout_s=timeout_s, idempotent=True
        )
        return list(body.get("data", [])) if isinstance(body, dict) else []

    async def extract_memories(
        self, user: str, texts: list[str], metadata: dict[str, Any], timeout_s: float
    ) -> list[str]:
        """The facts memory_svc extracted from `texts` and stored for `user`."""
        body = await self.upstreams["memory_svc"].post_json(
            f"/v1/users/{user}/memories/extract",
            {"texts": texts, "metadata": metadata},
            timeout_s=timeout_s,
        )
        facts = body.get("facts", []) if isinstance(body, dict) else []
        return [str(f) for f in facts]

    async def recent_messages(
        self, session_id: str, limit: int, timeout_s: float
    ) -> list[tuple[str, str]]:
        """(role, content) of the session's last `limit` messages, oldest first."""
        body = await self.upstreams["memory_svc"].get_json(
            f"/v1/sessions/{session_id}/messages", params={"limit": limit}, timeout_s=timeout_s
        )
        data = body.get("data", []) if isinstance(body, dict) else []
        turns = [(str(m["role"]), str(m["content"])) for m in data if m.get("role") != "system"]
        return list(reversed(turns))  # memory_svc lists newest first

    async def context(
        self, session_id: str, budget_tokens: int, system_prompt: str | None, timeout_s: float
    ) -> ContextResponse:
        payload: dict[str, Any] = {"budget_tokens": budget_tokens}
        if system_prompt is not None:
            payload["system_prompt"] = system_prompt
        body = await self.upstreams["memory_svc"].post_json(
            f"/v1/sessions/{session_id}/context", payload, timeout_s=timeout_s, idempotent=True
        )
        try:
            return ContextResponse.model_validate(body)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("memory_svc", exc) from None

    # --- rag_svc ---------------------------------------------------------------------------

    async def rag_answer(
        self,
        collections: list[str] | None,
        question: str,
        k: int,
        timeout_s: float,
        max_tokens: int | None,
    ) -> AnswerResponse:
        """rag_svc's answer from `collections` (None: every one the caller may read)."""
        payload: dict[str, Any] = {"question": question, "k": k}
        if collections is not None:
            payload["collections"] = collections
        if max_tokens is not None:
            payload["max_tokens"] = min(max(max_tokens, RAG_MIN_MAX_TOKENS), RAG_MAX_MAX_TOKENS)
        body = await self.upstreams["rag_svc"].post_json(
            "/v1/answer",
            payload,
            timeout_s=timeout_s,
            idempotent=True,
        )
        try:
            return AnswerResponse.model_validate(body)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("rag_svc", exc) from None

    # --- reasoning_svc ---------------------------------------------------------------------

    async def reason(self, request: ReasonRequest, timeout_s: float) -> ReasonResponse:
        # Unset knobs stay out of the request: reasoning_svc applies its own defaults.
        payload = request.model_dump(mode="json", exclude_none=True)
        body = await self.upstreams["reasoning_svc"].post_json(
            "/v1/reason", payload, timeout_s=timeout_s
        )
        try:
            return ReasonResponse.model_validate(body)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("reasoning_svc", exc) from None

    # --- creative_svc ----------------------------------------------------------------------

    async def ideate(self, task: str, n: int, timeout_s: float) -> dict[str, Any]:
        body = await self.upstreams["creative_svc"].post_json(
            "/v1/creative/ideate", {"task": task, "n": n}, timeout_s=timeout_s
        )
        if not isinstance(body, dict) or not isinstance(body.get("ideas"), list):
            raise BadUpstreamResponse(
                "creative_svc", "answered in an unexpected shape: no 'ideas' list"
            )
        return body

    # --- tools_svc -------------------------------------------------------------------------

    async def invoke_tool(
        self, tool: str, arguments: dict[str, Any], timeout_s: float
    ) -> InvokeResponse:
        body = await self.upstreams["tools_svc"].post_json(
            f"/v1/tools/{tool}/invoke", {"arguments": arguments}, timeout_s=timeout_s
        )
        try:
            return InvokeResponse.model_validate(body)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("tools_svc", exc) from None

    # --- moe_svc ---------------------------------------------------------------------------

    async def model(self, timeout_s: float) -> str:
        """The configured model, else the default model, else the first moe_svc lists."""
        return await self._chat.resolve(timeout_s)

    async def chat(
        self, body: dict[str, Any], timeout_s: float
    ) -> tuple[list[ChatChoice], dict[str, Any] | None]:
        """The choices of one non-streamed completion of `body` (an OpenAI request), and
        moe_svc's experts per layer of the first when `body` asked for them."""
        client, body = self._route(body)
        answer = await client.post_json(
            "/v1/chat/completions", {**body, "stream": False}, timeout_s=timeout_s
        )
        try:
            choices = _CHOICES.validate_python(
                answer.get("choices") if isinstance(answer, dict) else None
            )
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation(client.upstream, exc) from None
        if not choices:
            raise BadUpstreamResponse(
                client.upstream, "answered in an unexpected shape: no choices"
            )
        return choices, first_expert_usage(answer)

    async def chat_stream(
        self, body: dict[str, Any], timeout_s: float
    ) -> AsyncIterator[tuple[list[ChatChunkChoice], dict[str, Any] | None]]:
        """The choices of each chunk of a streamed completion of `body`, and moe_svc's
        experts when a chunk carries them (the final one, when `body` asked)."""
        client, body = self._route(body)
        async with client.stream(
            "POST", "/v1/chat/completions", json={**body, "stream": True}, timeout_s=timeout_s
        ) as response:
            async for data in sse_data(response.aiter_lines()):
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    error = chunk["error"] if isinstance(chunk["error"], dict) else {}
                    raise UpstreamError(
                        str(error.get("message") or f"{client.upstream} failed mid-stream"),
                        status_code=502,
                        error_type="upstream_error",
                        origin=client.upstream,
                        code="stream_error",
                    )
                try:
                    choices = _CHUNK_CHOICES.validate_python(chunk.get("choices") or [])
                except ValidationError as exc:
                    raise BadUpstreamResponse.from_validation(client.upstream, exc) from None
                yield choices, first_expert_usage(chunk)
