"""Document quality rules in the style of Gopher and C4: length, symbols, repetition, stop words.

Sources of the rules and their default thresholds:

- Gopher: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
  from Training Gopher", appendix A (MassiveWeb quality filter and Table A1's
  repetition filter): 50 to 100,000 words, mean word length 3 to 10 characters,
  a hash-or-ellipsis-to-word ratio of at most 0.1, at most 90% of lines starting
  with a bullet and 30% ending with an ellipsis, at least 80% of words with a
  letter, at least two of eight English stop words, and the duplicate line and
  n-gram fractions below.
- C4: Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
  Unified Text-to-Text Transformer", section 2.2, keeps lines that end in terminal
  punctuation; as a document rule, FineWeb's form (Penedo et al. 2024): at least
  12% of lines end in punctuation.
- The digit share (at most 25% of non-space characters) is this project's addition
  in the same style: tables of figures, phone and price lists.

A record fails on the first rule it breaks, and the removal says which.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from curate.pipeline import KEEP, Decision
from curate.records import Record

__all__ = ["QualityFilter", "QualityRules"]

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("-", "*", "•", "·", "‣", "–", "▪")
ELLIPSES = ("...", "…")
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ")")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the quality stage; a record outside any of them is removed."""

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # '#' and ellipses per word
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8  # share of words with at least one letter
    max_digit_share: float = 0.25  # share of non-space characters that are digits
    min_punctuated_lines: float = 0.12  # share of lines ending in terminal punctuation
    min_stop_words: int = 2  # distinct English stop words; English or undetected text only
    max_duplicate_lines: float = 0.3  # share of lines that repeat an earlier line
    max_duplicate_line_chars: float = 0.2  # share of characters in such lines
    # Characters in the most frequent n-gram, per n (Gopher Table A1).
    max_top_ngram_chars: dict[int, float] = field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16}
    )
    # Characters in n-grams that occur more than once, per n (Gopher Table A1).
    max_duplicate_ngram_chars: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


class QualityFilter:
    name = "quality"

    def __init__(self, rules: QualityRules | None = None) -> None:
        self.rules = rules or QualityRules()

    def __call__(self, record: Record) -> Decision:
        failure = self.failure(record.text, record.language)
        return Decision("remove", failure) if failure else KEEP

    def failure(self, text: str, language: str | None = None) -> str | None:
        """The first rule `text` breaks, with the measured value; None if it passes them all."""
        r = self.rules
        words = text.split()
        n = len(words)
        if not r.min_words <= n <= r.max_words:
            return f"{n} words (allowed {r.min_words}-{r.max_words})"
        mean = sum(len(w) for w in words) / n
        if not r.min_mean_word_length <= mean <= r.max_mean_word_length:
            return f"mean word length {mean:.1f}"
        symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
        if symbols / n > r.max_symbol_word_ratio:
            return f"symbol/word ratio {symbols / n:.2f}"
        alpha = sum(1 for w in words if _LETTER.search(w)) / n
        if alpha < r.min_alpha_words:
            return f"words with a letter {alpha:.0%}"
        chars = "".join(words)
        digits = sum(c.isdigit() for c in chars) / len(chars)
        if digits > r.max_digit_share:
            return f"digit share {digits:.0%}"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        line_failure = self._lines(lines)
        if line_failure:
            return line_failure
        if language in (None, "en"):
            stops = len(STOP_WORDS.intersection(w.casefold() for w in words))
            if stops < r.min_stop_words:
                return f"{stops} English stop words"
        return self._repetition([w.casefold() for w in words], len(chars))

    def _lines(self, lines: list[str]) -> str | None:
        r = self.rules
        count = len(lines)
        bullets = sum(line.startswith(BULLETS) for line in lines) / count
        if bullets > r.max_bullet_lines:
            return f"bullet lines {bullets:.0%}"
        ellipses = sum(line.endswith(ELLIPSES) for line in lines) / count
        if ellipses > r.max_ellipsis_lines:
            return f"lines ending in an ellipsis {ellipses:.0%}"
        punctuated = sum(line.endswith(TERMINAL) for line in lines) / count
        if punctuated < r.min_punctuated_lines:
            return f"lines ending in punctuation {punctuated:.0%}"
        seen: set[str] = set()
        repeated_lines = repeated_chars = 0
        for line in lines:
            if line in seen:
                repeated_lines += 1
                repeated_chars += len(line)
            seen.add(line)
        total_chars = sum(len(line) for line in lines)
        if repeated_lines / count > r.max_duplicate_lines:
            return f"repeated lines {repeated_lines / count:.0%}"
        if repeated_chars / total_chars > r.max_duplicate_line_chars:
            return f"characters in repeated lines {repeated_chars / total_chars:.0%}"
        return None

    def _repetition(self, words: list[str], total_chars: int) -> str | None:
        for n, limit in self.rules.max_top_ngram_chars.items():
            grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            if not grams:
                continue
            gram, count = grams.most_common(1)[0]
            share = count * sum(len(w) for w in gram) / total_chars if count > 1 else 0.0
            if share > limit:
                return f"top {n}-gram {' '.join(gram)!r} holds {share:.0%} of characters"
        for n, limit in self.rules.max_duplicate_ngram_chars.items():
            share = _duplicate_ngram_chars(words, n) / total_chars
            if share > limit:
                return f"repeated {n}-grams hold {share:.0%} of characters"
        return None


def _duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters of words inside an n-gram seen earlier (each word counted once)."""
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, hit in zip(words, covered, strict=True) if hit)
