"""Chunking by embedding-model tokens, on sentence and paragraph boundaries, with overlap."""

from __future__ import annotations

import itertools

import pytest
from tokenizers import Tokenizer

from common.minilm import load_embedding_tokenizer
from rag_svc.chunking import Chunker, split_sentences


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return load_embedding_tokenizer()


def n_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def sentence(i: int) -> str:
    return f"Sentence {i} describes the harbour of town number {i} in some detail."


def test_sentences_split_on_terminators_not_abbreviations() -> None:
    text = "Dr. Smith met Mr. Jones. They talked e.g. about boats! Did it rain? Yes.\nA line"
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Dr. Smith met Mr. Jones.",
        "They talked e.g. about boats!",
        "Did it rain?",
        "Yes.",
        "A line",
    ]


def test_chunks_respect_the_token_budget_and_end_on_sentences(tokenizer: Tokenizer) -> None:
    text = " ".join(sentence(i) for i in range(60))
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap_tokens=0).split(text)

    assert len(chunks) > 5
    for chunk in chunks:
        assert n_tokens(tokenizer, chunk.text) <= 64
        assert chunk.text.startswith("Sentence ") and chunk.text.endswith("detail.")
        assert text[chunk.char_start : chunk.char_end] == chunk.text
    assert [c.position for c in chunks] == list(range(len(chunks)))
    # Without overlap the chunks tile the text exactly.
    assert " ".join(c.text for c in chunks) == text


def test_overlap_repeats_whole_sentences_within_budget(tokenizer: Tokenizer) -> None:
    text = " ".join(sentence(i) for i in range(40))
    chunks = Chunker(tokenizer, chunk_tokens=64, overlap_tokens=20).split(text)

    for previous, current in itertools.pairwise(chunks):
        shared = text[current.char_start : previous.char_end]
        assert current.char_start < previous.char_end, "consecutive chunks overlap"
        assert shared.startswith("Sentence ") and shared.endswith("detail.")
        assert n_tokens(tokenizer, shared) <= 20
    assert chunks[-1].char_end == len(text)


def test_chunks_prefer_paragraph_breaks(tokenizer: Tokenizer) -> None:
    paragraphs = [" ".join(sentence(10 * p + i) for i in range(3)) for p in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = Chunker(tokenizer, chunk_tokens=100, overlap_tokens=0).split(text)

    # Three sentences (~48 tokens) per paragraph: a 100-token chunk holds two paragraphs
    # and a bit; it ends where the second paragraph ends instead of mid-paragraph.
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in range(0, 6, 2)]


def test_an_over_long_sentence_is_cut_at_word_boundaries(tokenizer: Tokenizer) -> None:
    words = [f"internationalisation{i}" for i in range(80)]
    text = " ".join(words)
    chunks = Chunker(tokenizer, chunk_tokens=50, overlap_tokens=10).split(text)

    assert len(chunks) > 1
    for chunk in chunks:
        assert n_tokens(tokenizer, chunk.text) <= 50
        assert set(chunk.text.split()) <= set(words), "no word is split"
    assert " ".join(dict.fromkeys(w for c in chunks for w in c.text.split())) == text


def test_short_and_empty_texts(tokenizer: Tokenizer) -> None:
    chunker = Chunker(tokenizer, chunk_tokens=64, overlap_tokens=8)
    assert chunker.split("   \n\n  ") == []
    [only] = chunker.split("  One short sentence.  ")
    assert (only.text, only.char_start, only.position) == ("One short sentence.", 2, 0)
    with pytest.raises(ValueError):
        Chunker(tokenizer, chunk_tokens=10, overlap_tokens=10)
