"""What the engine is asked for and what it hands back.

A `GenerationRequest` carries a prompt (token ids), its `SamplingParams` and
optionally a `TokenConstraint` (a grammar state of its own); the engine thread
fills it and posts `Delta`s to the request's asyncio queue as tokens come: text
pieces, then one final delta with the finish reason and token counts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from moe_svc.engine.detokenizer import IncrementalDetokenizer

__all__ = [
    "Delta",
    "FinishReason",
    "GenerationRequest",
    "SampledToken",
    "SamplingParams",
    "TokenConstraint",
]

FinishReason = Literal["stop", "length", "abort"]

_ids = itertools.count()


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # <= 0: no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()  # stop strings: never part of the output
    stop_token_ids: frozenset[int] = frozenset()  # end-of-sequence tokens
    presence_penalty: float = 0.0  # OpenAI: subtracted once from tokens already generated
    frequency_penalty: float = 0.0  # OpenAI: subtracted per occurrence in the output
    repetition_penalty: float = 1.0  # CTRL / transformers: over prompt and output tokens
    # log-probabilities of each chosen token and of the `logprobs` likeliest (None: none)
    logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def penalised(self) -> bool:
        return (
            self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


class TokenConstraint(Protocol):
    """A sequence's grammar state: which tokens may come next (moe_svc.structured)."""

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (V,) with refused tokens at -inf, in place."""
        ...

    def accept(self, token: int) -> None: ...

    @property
    def done(self) -> bool:
        """Complete: nothing more may be generated."""
        ...


@dataclass
class SampledToken:
    """A chosen token, with its log-probability and the likeliest alternatives when asked."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Delta:
    """A piece of output; the last one of a request has `finish_reason` set."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # (num_layers, num_experts) token counts of this request, on the final delta when asked
    experts: list[list[int]] | None = None
    error: str | None = None  # set when the engine failed the request
    # set (with `error`) when the request was shed from the queue: seconds until a retry
    # would likely be admitted
    retry_after_s: float | None = None
    # the tokens since the previous delta, with logprobs, when the request asked for them
    logprobs: list[SampledToken] | None = None
    index: int = 0  # the choice this delta belongs to (set by GenerationRequest.post)


@dataclass(eq=False)
class GenerationRequest:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    record_experts: bool = False
    constraint: TokenConstraint | None = None
    # (position, (k, C) vectors): prompt positions whose embeddings are an image's
    # projected features (moe_svc.vision), not their placeholder tokens'
    image_embeds: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    index: int = 0  # choice index among the `n` of one API request
    request_id: int = field(default_factory=lambda: next(_ids))
    queue: asyncio.Queue[Delta] = field(default_factory=asyncio.Queue)
    arrival: float = field(default_factory=time.perf_counter)
    queued_at: float = 0.0  # when the engine queued it, on the engine's clock
    # engine-side state
    output_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    expert_counts: torch.Tensor | None = None  # (L, E) int64 when record_experts
    detokenizer: IncrementalDetokenizer | None = None
    pending_logprobs: list[SampledToken] = field(default_factory=list)  # not yet posted
    aborted: bool = False
    finished: bool = False

    def post(self, delta: Delta) -> None:
        """Hand a delta to the request's consumer (thread-safe; the loop may have closed)."""
        delta.index = self.index
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, delta)
        except RuntimeError:  # event loop closed: nobody is listening any more
            self.aborted = True
