"""Language identification with lingua, which ships its language models in the wheel.

lingua (Stahl, github.com/pemistahl/lingua-py) scores a text under character
n-gram models of each candidate language. It only weighs the `candidates` it is
built with: fewer candidates are faster and confuse less, and a text in a
language outside them reads as the nearest candidate or as undetected. A record
is kept when its most likely language is one of `keep` with at least
`min_confidence`; the language found is recorded on the record either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from lingua import IsoCode639_1, LanguageDetectorBuilder

from curate.pipeline import KEEP, Decision
from curate.records import Record

__all__ = ["DEFAULT_CANDIDATES", "LanguageFilter", "LanguageSettings"]

# The languages lingua chooses among unless told: English and the widely written
# languages that web and knowledge text mixes in most often.
DEFAULT_CANDIDATES = (
    "en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "ru", "uk", "bg",
    "tr", "ar", "fa", "hi", "bn", "zh", "ja", "ko", "id", "vi",
)  # fmt: skip


@dataclass(frozen=True)
class LanguageSettings:
    keep: tuple[str, ...] = ("en",)
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    # Below this the text is too mixed or too short to call, and it is removed.
    min_confidence: float = 0.5
    # Language is clear from the opening of a document; scoring more only costs time.
    max_chars: int = 2000
    # lingua's low accuracy mode scores trigrams only: as good on documents of a few
    # hundred characters, and it loads in well under a second where the full 1- to
    # 5-gram models take seconds. Full accuracy helps texts of a sentence or two.
    high_accuracy: bool = False


def iso_code(code: str) -> IsoCode639_1:
    """lingua's code for an ISO 639-1 string such as "en"; ValueError if lingua has none."""
    try:
        return IsoCode639_1.from_str(code.strip().lower())
    except ValueError:
        raise ValueError(f"unknown ISO 639-1 language code {code!r}") from None


class LanguageFilter:
    name = "language"

    def __init__(self, settings: LanguageSettings | None = None) -> None:
        self.settings = settings or LanguageSettings()
        codes = {iso_code(c) for c in (*self.settings.candidates, *self.settings.keep)}
        if len(codes) < 2:  # lingua needs at least two languages to choose between
            codes.add(IsoCode639_1.EN if IsoCode639_1.EN not in codes else IsoCode639_1.FR)
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        if not self.settings.high_accuracy:
            builder = builder.with_low_accuracy_mode()
        self._detector = builder.build()
        self._keep = {iso_code(c) for c in self.settings.keep}

    def __call__(self, record: Record) -> Decision:
        scores = self._detector.compute_language_confidence_values(
            record.text[: self.settings.max_chars]
        )
        best = scores[0] if scores and scores[0].value > 0 else None
        if best is None:
            return Decision("remove", "no language detected")
        code = best.language.iso_code_639_1
        record.language = code.name.lower()
        if code not in self._keep and best.value >= self.settings.min_confidence:
            return Decision("remove", f"{record.language} ({best.value:.2f})")
        if best.value < self.settings.min_confidence:
            return Decision(
                "remove", f"language unclear (at best {record.language}, {best.value:.2f})"
            )
        return KEEP
