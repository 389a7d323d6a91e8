"""Grammars compiled once per schema and a matcher per sequence, on llguidance.

llguidance was chosen by measuring the per-token mask cost with the default model's
tokenizer (49,152 tokens; see moe_svc/README.md): it compiles a grammar lazily (a
few milliseconds, against xgrammar's ahead-of-time compile and outlines-core's
regex index), its masks cost tens of microseconds per token, and its Lark
grammars with embedded JSON schemas express "a tool call or prose" directly.

A `GrammarCompiler` keeps one parsed matcher per grammar text and hands each
sequence a copy (`GrammarState`). The engine asks a state for its mask before
sampling the sequence's next token and tells it the token after.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import llguidance
import torch

__all__ = ["GrammarCompiler", "GrammarError", "GrammarState", "json_grammar", "lark_grammar"]

# compact separators: no whitespace for a small model to loop on
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


class GrammarError(ValueError):
    """A schema or grammar that cannot be compiled (the reason is the message)."""


def json_grammar(schema: dict[str, Any], lenient: bool = False) -> str:
    """Grammar text of JSON valid against `schema` (lenient: skip unsupported keywords)."""
    options = {**_JSON_OPTIONS, "lenient": lenient}
    return json.dumps({"grammars": [{"json_schema": {**schema, "x-guidance": options}}]})


def lark_grammar(definition: str) -> str:
    """Grammar text of a request's own Lark grammar."""
    return json.dumps({"grammars": [{"lark_grammar": definition}]})


class GrammarCompiler:
    """Compiles grammar texts for one tokenizer, caching the most recent `cache_size`."""

    def __init__(
        self, tokenizer_json: str, vocab_size: int, eos_ids: list[int], cache_size: int = 128
    ) -> None:
        # A model without an end-of-sequence token cannot end a constrained answer: its
        # tokenizer still decodes (logprobs), with token 0 in the EOS slot llguidance needs,
        # and every grammar is refused (GrammarError).
        self.tokenizer = llguidance.LLTokenizer(
            tokenizer_json, n_vocab=vocab_size, eos_token=eos_ids or [0]
        )
        self.can_end = bool(eos_ids)
        self.vocab_size = vocab_size
        self._cache: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # requests compile on the server loop, states copy anywhere

    def compile(self, grammar: str) -> llguidance.LLMatcher:
        """A parsed matcher for `grammar` (cached); raises GrammarError with the reason."""
        if not self.can_end:
            raise GrammarError(
                "this model has no end-of-sequence token, so a constrained answer (a schema, "
                "a tool call) could never end; serve a model whose tokenizer or "
                "generation_config.json names one"
            )
        with self._lock:
            if (matcher := self._cache.get(grammar)) is not None:
                self._cache.move_to_end(grammar)
                return matcher
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self.tokenizer
        )
        if failed:
            raise GrammarError(_reason(messages))
        matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        if matcher.is_error():
            raise GrammarError(_reason([matcher.get_error()]))
        with self._lock:
            self._cache[grammar] = matcher
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return matcher

    def state(self, grammar: str) -> GrammarState:
        """A fresh state of `grammar` for one sequence."""
        return GrammarState(self.compile(grammar).deep_copy(), self.vocab_size)


def _reason(messages: list[str]) -> str:
    text = "; ".join(m.strip() for m in messages if m.strip()) or "unknown error"
    return text.splitlines()[0][:500]


_SHIFTS = torch.arange(32, dtype=torch.int32)


class GrammarState:
    """One sequence's position in its grammar: the tokens allowed next."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._words = torch.zeros((vocab_size + 31) // 32, dtype=torch.int32)

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens the grammar accepts next."""
        words = self._words
        self._matcher.unsafe_compute_mask_ptr(words.data_ptr(), words.numel() * 4)
        bits = (words.unsqueeze(-1) >> _SHIFTS) & 1  # (W, 32), little-endian bit order
        return bits.view(-1)[: self._vocab_size].bool()

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (V,) with the tokens the grammar refuses at -inf (in place)."""
        return logits.masked_fill_(~self.allowed(), float("-inf"))

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise GrammarError(self._matcher.get_error() or f"token {token} refused")

    @property
    def done(self) -> bool:
        """The grammar is complete and admits nothing more."""
        return bool(self._matcher.is_stopped())
