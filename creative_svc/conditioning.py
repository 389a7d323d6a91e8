"""From prompt text to the generators' condition: the MiniLM embedding, and what it is close to.

The generators only know the ten Fashion-MNIST classes. `PromptEncoder.encode`
also reports the closest class and how close (cosine similarity to the nearest
class caption), so a prompt for something else ("a horse") still gets an
image, with a note; a prompt with no recognisable word at all ("asdfgh") is
refused, since nothing in it can steer the model.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.minilm import MiniLMEmbedder
from creative_svc.captions import CLASS_NAMES, CLASS_SYNONYMS

__all__ = ["EncodedPrompt", "PromptEncoder", "has_known_word"]

_STOPWORDS = frozenset(
    {"a", "an", "the", "of", "in", "on", "with", "and", "or", "for", "to", "me", "my", "please"}
    | {"some", "one", "draw", "show", "make", "generate", "create", "picture", "image", "photo"}
)
_CACHE_SIZE = 512


@dataclass(frozen=True)
class EncodedPrompt:
    embedding: np.ndarray  # (384,) unit norm
    nearest_class: str
    similarity: float  # cosine similarity to the nearest class caption


def has_known_word(text: str, is_known_word: Callable[[str], bool]) -> bool:
    """Whether `text` has a content word (not "a", "draw", ...) that `is_known_word` accepts."""
    words = re.findall(r"[a-z]+", text.lower())
    return any(w not in _STOPWORDS and is_known_word(w) for w in words)


class PromptEncoder:
    """Caption text -> `EncodedPrompt`; caches recent prompts (thread-safe)."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self.embedder = embedder
        self.vocabulary = {w for w in embedder.tokenizer.get_vocab() if w.isalpha()}
        self.vocabulary |= {
            w for names in CLASS_SYNONYMS.values() for n in names for w in n.split()
        }
        # Class references: plain captions per synonym, no colours (the images have none).
        self._class_refs: list[np.ndarray] = []
        for name in CLASS_NAMES:
            captions = [f"a {s}" for s in CLASS_SYNONYMS[name]]
            captions += [f"a photo of a {s}" for s in CLASS_SYNONYMS[name]]
            self._class_refs.append(embedder.encode(captions))
        self._cache: OrderedDict[str, EncodedPrompt] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, threads: int | None = None) -> PromptEncoder:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is read from site-packages
        return cls(MiniLMEmbedder(threads=threads))

    def is_known_word(self, word: str) -> bool:
        """In the vocabulary, or two word pieces with a real stem ("sneak" + "##er").

        Keyboard mash ("asdfgh" -> "as ##df ##gh") splits into short shards.
        """
        if word in self.vocabulary:
            return True
        pieces = self.embedder.tokenizer.encode(word, add_special_tokens=False).tokens
        return len(pieces) <= 2 and len(pieces[0]) >= 3

    def is_known(self, text: str) -> bool:
        return has_known_word(text, self.is_known_word)

    def ranked_classes(self, text: str) -> list[str]:
        """Every class, nearest to `text` first."""
        vector = self.encode(text).embedding
        similarities = [float((refs @ vector).max()) for refs in self._class_refs]
        return [CLASS_NAMES[i] for i in np.argsort(similarities)[::-1]]

    def encode(self, text: str) -> EncodedPrompt:
        key = text.strip().lower()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        vector = self.embedder.encode([key])[0]
        similarities = [float((refs @ vector).max()) for refs in self._class_refs]
        best = int(np.argmax(similarities))
        encoded = EncodedPrompt(vector, CLASS_NAMES[best], similarities[best])
        with self._lock:
            self._cache[key] = encoded
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return encoded
