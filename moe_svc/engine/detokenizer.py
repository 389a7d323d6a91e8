"""Incremental detokenization that never splits a UTF-8 character, and stop strings.

Byte-level BPE tokens may end in the middle of a multi-byte character: decoding
such a prefix gives U+FFFD. As vLLM does, the text of the tokens since a
"prefix offset" is decoded twice (without and with the new tokens) and only the
difference is released, once it no longer ends in an incomplete character.
Decoding a short window instead of the whole output keeps each step O(1).

Stop strings may span tokens: text that could still be the start of a stop string
is held back until it no longer can be, and a match ends the output just before it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["IncrementalDetokenizer", "TokenDecoder"]

_REPLACEMENT = "\ufffd"


class TokenDecoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Feed token ids one at a time; get back the text safe to show so far."""

    def __init__(self, tokenizer: TokenDecoder, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1  # chars a stop may still need
        self.text = ""  # everything decoded so far (stop string and after cut off on a match)
        self._released = 0  # chars of `text` handed out
        self.stopped = False  # a stop string matched

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add a token; return newly releasable text ('' while a character or stop is pending)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(_REPLACEMENT):
            self._add_text(full[len(prefix) :])
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._release(final=False)

    def _add_text(self, new: str) -> None:
        start = max(0, len(self.text) - self._hold)  # a match may begin in held-back text
        self.text += new
        if not self._stop:
            return
        hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _release(self, final: bool) -> str:
        end = len(self.text)
        if not final and not self.stopped and self._stop:
            end = max(self._released, end - self._hold_needed())
        piece = self.text[self._released : end]
        self._released = end
        return piece

    def _hold_needed(self) -> int:
        """Chars at the end of `text` that are a proper prefix of some stop string."""
        best = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(self.text)), best, -1):
                if self.text.endswith(stop[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """At the end of generation: whatever is still held back (incomplete bytes dropped)."""
        if not self.stopped and self._read_offset < len(self._ids):
            # trailing tokens that never formed a complete character: keep what decodes
            full = self._decode(self._ids[self._prefix_offset :])
            prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
            tail = full[len(prefix) :].rstrip(_REPLACEMENT)
            if tail:
                self._add_text(tail)
            self._read_offset = len(self._ids)
        return self._release(final=True)
