"""Split a document into chunks of at most N embedding-model tokens.

A chunk is a run of whole sentences (a sentence longer than N is cut at word
boundaries); a chunk prefers to end where a paragraph ends once it is half
full; the next chunk starts with the last whole sentences of the previous one,
up to the overlap budget. Chunk texts are slices of the original text, so
their character offsets point back into the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenizers import Tokenizer

__all__ = ["Chunk", "Chunker", "split_sentences"]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends with . ! or ? (plus closing quotes/brackets) before whitespace, or at a
# line break; the next sentence must not start in lower case ("e.g. this" stays one).
_SENTENCE_END = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=[^a-z\s])|\s*\n\s*""")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co"}
    | {"corp", "no", "fig", "al", "e.g", "i.e", "u.s", "u.k", "approx"}
)


@dataclass(frozen=True)
class Chunk:
    text: str
    position: int
    char_start: int
    char_end: int
    tokens: int


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an over-long one) of one paragraph."""

    start: int
    end: int
    paragraph: int
    tokens: int = 0


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text[start:end]`, whitespace trimmed."""
    end = len(text) if end is None else end
    spans, cursor = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        before = text[cursor : match.start()]
        last_word = before.rsplit(None, 1)[-1].rstrip(".").lower() if before.strip() else ""
        if "\n" not in match.group() and last_word in _ABBREVIATIONS:
            continue
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    trimmed = []
    for s, e in spans:
        piece = text[s:e]
        if piece.strip():
            s += len(piece) - len(piece.lstrip())
            e -= len(piece) - len(piece.rstrip())
            trimmed.append((s, e))
    return trimmed


class Chunker:
    """Token-bounded, sentence-respecting chunking with whole-sentence overlap."""

    def __init__(self, tokenizer: Tokenizer, chunk_tokens: int, overlap_tokens: int) -> None:
        if not 0 <= overlap_tokens < chunk_tokens:
            raise ValueError("overlap_tokens must be in [0, chunk_tokens)")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    def split(self, text: str) -> list[Chunk]:
        units = self._units(text)
        chunks: list[Chunk] = []
        start = 0
        while start < len(units):
            end = self._chunk_end(units, start)
            first, last = units[start], units[end - 1]
            chunks.append(
                Chunk(
                    text=text[first.start : last.end],
                    position=len(chunks),
                    char_start=first.start,
                    char_end=last.end,
                    tokens=sum(u.tokens for u in units[start:end]),
                )
            )
            if end >= len(units):
                break
            start = self._next_start(units, start, end)
        return chunks

    def _chunk_end(self, units: list[_Unit], start: int) -> int:
        end, total = start, 0
        while end < len(units) and total + units[end].tokens <= self.chunk_tokens:
            total += units[end].tokens
            end += 1
        end = max(end, start + 1)
        if end < len(units) and units[end].paragraph == units[end - 1].paragraph:
            # Cutting inside a paragraph: end at the last paragraph break instead, if
            # the chunk would still be at least half full.
            filled = 0
            best = None
            for i in range(start, end):
                paragraph_starts = i > start and units[i].paragraph != units[i - 1].paragraph
                if paragraph_starts and filled >= self.chunk_tokens // 2:
                    best = i
                filled += units[i].tokens
            end = best or end
        return end

    def _next_start(self, units: list[_Unit], start: int, end: int) -> int:
        next_start, overlap = end, 0
        while (
            next_start - 1 > start and overlap + units[next_start - 1].tokens <= self.overlap_tokens
        ):
            overlap += units[next_start - 1].tokens
            next_start -= 1
        return next_start

    def _units(self, text: str) -> list[_Unit]:
        spans: list[tuple[int, int, int]] = []
        for paragraph, (p_start, p_end) in enumerate(_paragraph_spans(text)):
            spans.extend((s, e, paragraph) for s, e in split_sentences(text, p_start, p_end))
        if not spans:
            return []
        encodings = self.tokenizer.encode_batch(
            [text[s:e] for s, e, _ in spans], add_special_tokens=False
        )
        units: list[_Unit] = []
        for (s, e, paragraph), encoding in zip(spans, encodings, strict=True):
            if len(encoding.ids) <= self.chunk_tokens:
                units.append(_Unit(s, e, paragraph, max(1, len(encoding.ids))))
            else:
                units.extend(self._cut_long_sentence(s, paragraph, encoding))
        return units

    def _cut_long_sentence(self, offset: int, paragraph: int, encoding: object) -> list[_Unit]:
        tokens: list[str] = encoding.tokens  # type: ignore[attr-defined]
        offsets: list[tuple[int, int]] = encoding.offsets  # type: ignore[attr-defined]
        pieces, begin = [], 0
        while begin < len(tokens):
            stop = min(begin + self.chunk_tokens, len(tokens))
            # Back off to a word start ("##" marks a word piece continuing a word).
            while stop < len(tokens) and stop > begin + 1 and tokens[stop].startswith("##"):
                stop -= 1
            pieces.append(
                _Unit(
                    offset + offsets[begin][0],
                    offset + offsets[stop - 1][1],
                    paragraph,
                    stop - begin,
                )
            )
            begin = stop
        return pieces
