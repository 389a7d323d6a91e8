"""Check an answer's `[n]` citations against the numbered sources it was given.

For each sentence of the answer and each number it cites: the number must
name a source, and the source must support the sentence, lexically (the
share of the sentence's stemmed content words that the source contains) or
semantically (the best cosine between the sentence and one of the source's
sentences). The answer is `verified` when it cites at least once and every
citation is valid and supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.contracts.rag import AnswerSource, Citation
from rag_svc.chunking import split_sentences
from rag_svc.indexes import bm25_tokens

__all__ = ["CitedSentence", "cited_sentences", "verify_citations"]

_MARKER = re.compile(r"\[\s*(?:sources?\s*)?(\d+(?:\s*[,;]\s*(?:sources?\s*)?\d+)*)\s*\]", re.I)


_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class CitedSentence:
    sentence: str  # as written, markers included
    claim: str  # without the markers
    numbers: list[int]


def cited_sentences(answer: str) -> list[CitedSentence]:
    """The answer's sentences with the numbers each cites (markers alone join the previous)."""
    pieces = [answer[s:e] for s, e in split_sentences(answer)]
    merged: list[str] = []
    for piece in pieces:
        if merged and not _MARKER.sub("", piece).strip(" .,;:"):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    out = []
    for sentence in merged:
        numbers: list[int] = []
        for match in _MARKER.finditer(sentence):
            for number in re.findall(r"\d+", match.group(1)):
                if int(number) not in numbers:
                    numbers.append(int(number))
        # A marker taken out leaves no space before the punctuation that followed it.
        claim = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(_MARKER.sub(" ", sentence).split()))
        out.append(CitedSentence(sentence.strip(), claim, numbers))
    return out


def _lexical_support(claim: str, source: str) -> float:
    claim_words = set(bm25_tokens([claim])[0])
    if not claim_words:
        return 0.0
    return len(claim_words & set(bm25_tokens([source])[0])) / len(claim_words)


def verify_citations(
    answer: str,
    sources: list[AnswerSource],
    embed: Callable[[list[str]], np.ndarray],
    *,
    lexical_threshold: float,
    embedding_threshold: float,
) -> tuple[list[Citation], bool]:
    by_number = {s.number: s for s in sources}
    sentences = [s for s in cited_sentences(answer) if s.numbers]
    pairs = [(s, n) for s in sentences for n in s.numbers]
    valid_pairs = [(s, n) for s, n in pairs if n in by_number]
    semantic: dict[tuple[str, int], float] = {}
    if valid_pairs:
        claims = sorted({s.claim for s, _ in valid_pairs})
        source_sentences = {
            n: [by_number[n].text[a:b] for a, b in split_sentences(by_number[n].text)]
            or [by_number[n].text]
            for n in {n for _, n in valid_pairs}
        }
        flat = [text for n in sorted(source_sentences) for text in source_sentences[n]]
        vectors = embed(claims + flat)
        claim_vectors = dict(zip(claims, vectors[: len(claims)], strict=True))
        offset = len(claims)
        source_vectors = {}
        for n in sorted(source_sentences):
            count = len(source_sentences[n])
            source_vectors[n] = vectors[offset : offset + count]
            offset += count
        for s, n in valid_pairs:
            semantic[(s.claim, n)] = float((source_vectors[n] @ claim_vectors[s.claim]).max())
    citations = []
    for s, n in pairs:
        source = by_number.get(n)
        if source is None:
            citations.append(
                Citation(
                    number=n,
                    sentence=s.sentence,
                    valid=False,
                    supported=False,
                    lexical=0.0,
                    semantic=0.0,
                )
            )
            continue
        lexical = _lexical_support(s.claim, source.text)
        cosine = semantic[(s.claim, n)]
        citations.append(
            Citation(
                number=n,
                sentence=s.sentence,
                valid=True,
                supported=lexical >= lexical_threshold or cosine >= embedding_threshold,
                lexical=round(lexical, 4),
                semantic=round(cosine, 4),
                doc_id=source.doc_id,
                chunk_id=source.chunk_id,
            )
        )
    verified = bool(citations) and all(c.valid and c.supported for c in citations)
    return citations, verified
