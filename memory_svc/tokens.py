"""Token counting with the core model's tokenizer: moe_svc's, or the same one locally.

Counts are of text as the model sees it: a message costs what SmolLM2's chat
template makes of it (`<|im_start|>role\\ncontent<|im_end|>\\n`), and a prompt
ends with the assistant header the model generates after. Control tokens are
cut out before byte-level BPE runs, so a conversation's count is exactly the
sum of its messages' counts.
"""

from __future__ import annotations

import logging
from typing import Protocol

from tokenizers import Tokenizer

from common.errors import ServiceError, UpstreamError
from common.http_client import ServiceClient

__all__ = [
    "GENERATION_PROMPT",
    "LocalTokenCounter",
    "MoeTokenCounter",
    "TokenCounter",
    "render_message",
]

logger = logging.getLogger("memory_svc.tokens")

# What the chat template appends so that the model answers as the assistant.
GENERATION_PROMPT = "<|im_start|>assistant\n"


def render_message(role: str, content: str) -> str:
    """One message in SmolLM2's chat template (the `name` field is not rendered)."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


class TokenCounter(Protocol):
    """Counts tokens of the core model; `source` names who counted last."""

    @property
    def source(self) -> str: ...

    async def count(self, text: str) -> int: ...


class LocalTokenCounter:
    """The core model's tokenizer in this process (microseconds per message)."""

    source = "local"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    async def count(self, text: str) -> int:
        return self.count_sync(text)

    def count_sync(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` that is at most `max_tokens` tokens."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return text
        if max_tokens <= 0:
            return ""
        end = encoding.offsets[max_tokens - 1][1]
        return text[:end]


class MoeTokenCounter:
    """moe_svc's `/v1/tokenize`, with the local tokenizer when moe_svc does not answer.

    moe_svc's own count is authoritative when it is up (it might serve another
    model than the default); the fallback keeps history and context working
    while it is down. The client's circuit breaker makes a down moe_svc cost a
    refused connection only every few seconds.
    """

    def __init__(
        self, client: ServiceClient, fallback: LocalTokenCounter | None, timeout_s: float
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._timeout_s = timeout_s
        self._last_source = "moe_svc"

    @property
    def source(self) -> str:
        return self._last_source

    async def count(self, text: str) -> int:
        try:
            body = await self._client.post_json(
                "/v1/tokenize", {"text": text}, timeout_s=self._timeout_s
            )
            count = int(body["count"])
        except (ServiceError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, UpstreamError) and exc.status_code < 500 and exc.status_code != 404:
                raise  # moe_svc refused this text: a caller's problem, not an outage
            if self._fallback is None:
                raise
            if self._last_source != "local":
                logger.warning(
                    "moe_svc cannot count tokens; counting locally", extra={"error": str(exc)}
                )
            self._last_source = "local"
            return self._fallback.count_sync(text)
        self._last_source = "moe_svc"
        return count
