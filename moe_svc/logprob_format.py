"""Sampled tokens' log-probabilities in OpenAI's shapes (chat and legacy completions)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from common.contracts.openai import ChoiceLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob
from moe_svc.engine import SampledToken

__all__ = ["LogprobFormatter"]

# OpenAI's JSON cannot carry -inf: tokens cut by top-k / top-p report this (as vLLM)
_FLOOR = -9999.0


class LogprobFormatter:
    """Token ids to their text and bytes, and sampled tokens to OpenAI's logprobs."""

    def __init__(self, token_bytes: Callable[[list[int]], bytes]) -> None:
        self._bytes = lru_cache(maxsize=65536)(lambda token: token_bytes([token]))

    def token(self, token: int) -> tuple[str, list[int]]:
        raw: bytes = self._bytes(token)
        return raw.decode("utf-8", errors="replace"), list(raw)

    def _top(self, token: int, logprob: float) -> TopLogprob:
        text, raw = self.token(token)
        return TopLogprob(token=text, logprob=max(logprob, _FLOOR), bytes=raw)

    def chat(self, sampled: list[SampledToken]) -> ChoiceLogprobs:
        content = []
        for s in sampled:
            chosen = self._top(s.token, s.logprob if s.logprob is not None else _FLOOR)
            top = [self._top(t, lp) for t, lp in s.top]
            content.append(TokenLogprob(**chosen.model_dump(), top_logprobs=top))
        return ChoiceLogprobs(content=content)

    def completion(self, sampled: list[SampledToken], offset: int) -> CompletionLogprobs:
        """Legacy shape; `offset`: where the first token's text starts in the choice's text."""
        out = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
        for s in sampled:
            text, _ = self.token(s.token)
            out.tokens.append(text)
            out.token_logprobs.append(max(s.logprob if s.logprob is not None else _FLOOR, _FLOOR))
            out.top_logprobs.append({self.token(t)[0]: max(lp, _FLOOR) for t, lp in s.top})
            out.text_offset.append(offset)
            offset += len(text)
        return out
