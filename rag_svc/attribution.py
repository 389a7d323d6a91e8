"""Attribution after generation: each answer sentence cited by the source that supports it.

A small model seldom writes `[n]` markers, and writes some that point to the
wrong source. After generation every sentence of the answer is scored against
every numbered source with the cross-encoder (the reranker's model; its logit:
how well the passage answers the sentence). The cross-encoder judges topic more
than fact: "Angola's capital is Lisbon" scores high against the Angola page. So
a gate comes first: a source supports a sentence only if it holds the
sentence's key terms, its numbers (a year, a count) and its names (capitalised
words that are not stop words). Then, per sentence:

- supported (a source passes the gate with logit >= threshold): the markers the model wrote that the
  scores confirm are kept; wrong ones are replaced by the best source
  (`corrected`) or taken out (`removed`); a sentence without any gets the best
  source's marker (`attributed`);
- unsupported: its markers are taken out and the sentence is flagged (kept,
  listed) or dropped from the answer, as the policy says. Dropping every
  sentence would leave no answer: then all are kept and flagged.

The threshold is measured on a labelled sample (bench/rag_attribution_eval.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.contracts.rag import (
    AnswerSource,
    Attribution,
    Citation,
    CitationOrigin,
    SentenceSupport,
    UnsupportedPolicy,
)
from rag_svc.indexes import bm25_tokens
from rag_svc.reranker import Reranker
from rag_svc.verification import cited_sentences, verify_citations

__all__ = ["Attributed", "attribute", "support_matrix"]

_NUMBER = re.compile(r"\d[\d,.]*\d|\d")
_NAME = re.compile(r"\b[A-Z][\w'-]*")
_END = ".!?"
# A logit no source reaches: what a sentence's support reads when every source fails the gate.
NO_SUPPORT = -20.0
# A claim of fewer words is scored with the question it answers.
SHORT_CLAIM_WORDS = 4


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(text)}


def key_terms(text: str) -> set[str]:
    """The numbers and stemmed names (capitalised words, stop words aside) of `text`."""
    names = [t for word in _NAME.findall(text) for t in bm25_tokens([word])[0]]
    return _numbers(text) | set(names)


def _vocabulary(text: str) -> set[str]:
    return _numbers(text) | set(bm25_tokens([text])[0])


def _passage(source: AnswerSource) -> str:
    # As the collection indexed it: the title on its own line, then the text.
    return f"{source.title}\n{source.text}" if source.title else source.text


def _logit(probability: np.ndarray) -> np.ndarray:
    # The reranker's probabilities saturate near 1; its logits keep the order (float32 holds
    # 1 - p down to ~1e-7, logits up to ~16, beyond what this model gives).
    p = np.clip(probability.astype(np.float64), 1e-9, 1 - 1e-7)
    return np.log(p / (1 - p))


def support_matrix(
    claims: list[str],
    sources: list[AnswerSource],
    reranker: Reranker,
    *,
    gate: bool = True,
    question: str = "",
) -> np.ndarray:
    """(len(claims), len(sources)) cross-encoder logits; NO_SUPPORT where the gate fails.

    A claim too short to say anything alone ("1945.") is scored after the `question` it
    answers; the gate still asks for the claim's own key terms.
    """
    scores = np.full((len(claims), len(sources)), NO_SUPPORT)
    passages = [_passage(s) for s in sources]
    vocabularies = [_vocabulary(p) for p in passages]
    for i, claim in enumerate(claims):
        wanted = key_terms(claim)
        passing = [j for j, have in enumerate(vocabularies) if not gate or wanted <= have]
        if passing:
            scored = f"{question} {claim}" if len(claim.split()) < SHORT_CLAIM_WORDS else claim
            logits = _logit(reranker.score(scored.strip(), [passages[j] for j in passing]))
            scores[i, passing] = np.maximum(logits, NO_SUPPORT)
    return scores


@dataclass(frozen=True)
class Attributed:
    answer: str
    citations: list[Citation]
    attribution: Attribution
    # The answer holds at least one citation and no unsupported sentence.
    verified: bool


def _with_markers(claim: str, numbers: list[int]) -> str:
    if not numbers:
        return claim
    markers = "".join(f"[{n}]" for n in numbers)
    if claim and claim[-1] in _END:
        return f"{claim[:-1].rstrip()} {markers}{claim[-1]}"
    return f"{claim} {markers}"


def attribute(
    answer: str,
    question: str,
    sources: list[AnswerSource],
    reranker: Reranker,
    embed: Callable[[list[str]], np.ndarray],
    *,
    threshold: float,
    policy: UnsupportedPolicy,
    lexical_threshold: float,
    embedding_threshold: float,
    cut: bool = False,
) -> Attributed:
    """The answer with every supported sentence cited and unsupported ones flagged or dropped.

    `cut`: max_tokens ended the answer. A last sentence that did not reach its end
    is kept as written, unfinished: a claim cut mid-way ("in 19") can be neither
    supported nor refuted, so it gets no citation, is never dropped, and does not
    count against `verified`.
    """
    sentences = [s for s in cited_sentences(answer) if s.claim.strip(" .,;:")]
    unfinished = cut and bool(sentences) and sentences[-1].claim.rstrip()[-1:] not in _END
    by_number = {s.number: i for i, s in enumerate(sources)}
    scores = support_matrix([s.claim for s in sentences], sources, reranker, question=question)
    checks: list[SentenceSupport] = []
    chosen: list[tuple[list[int], CitationOrigin]] = []
    corrected: list[int] = []
    removed: list[int] = []
    for i, sentence in enumerate(sentences):
        last_cut = unfinished and i == len(sentences) - 1
        best = int(scores[i].argmax()) if sources else -1
        support = float(scores[i, best]) if sources else 0.0
        supported = support >= threshold and not last_cut
        checks.append(
            SentenceSupport(
                sentence=sentence.claim,
                source=sources[best].number if supported else None,
                support=round(support, 4),
                supported=supported,
                written=sentence.numbers,
                unfinished=last_cut,
            )
        )
        confirmed = [
            n for n in sentence.numbers if n in by_number and scores[i, by_number[n]] >= threshold
        ]
        wrong = [n for n in sentence.numbers if n not in confirmed]
        if not supported:
            removed += wrong
            chosen.append(([], "model"))
        elif confirmed:
            removed += wrong
            chosen.append((confirmed, "model"))
        elif sentence.numbers:
            corrected += wrong
            chosen.append(([sources[best].number], "corrected"))
        else:
            chosen.append(([sources[best].number], "attributed"))

    dropping = policy == "drop" and any(c.supported for c in checks)
    kept = [
        _with_markers(s.claim, numbers)
        for s, c, (numbers, _) in zip(sentences, checks, chosen, strict=True)
        if c.supported or c.unfinished or not dropping
    ]
    text = " ".join(kept)
    citations = verify_citations(
        text,
        sources,
        embed,
        lexical_threshold=lexical_threshold,
        embedding_threshold=embedding_threshold,
    )[0]
    origin = {
        (_with_markers(s.claim, numbers), n): (o, float(scores[i, by_number[n]]))
        for i, (s, (numbers, o)) in enumerate(zip(sentences, chosen, strict=True))
        for n in numbers
    }
    for citation in citations:
        how, support = origin[(citation.sentence, citation.number)]
        citation.origin = how
        citation.support = round(support, 4)
        citation.supported = True
    verified = bool(citations) and all(c.supported or c.unfinished for c in checks)
    attribution = Attribution(
        unsupported="dropped" if dropping else "flagged",
        threshold=threshold,
        sentences=checks,
        corrected=sorted(set(corrected)),
        removed=sorted(set(removed)),
    )
    return Attributed(text, citations, attribution, verified)
