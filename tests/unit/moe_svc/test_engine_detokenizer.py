"""Streaming text: UTF-8 characters split across tokens, stop strings split across tokens."""

from __future__ import annotations

import pytest

from moe_svc.engine import IncrementalDetokenizer
from moe_svc.loader import TextTokenizer
from tests.helpers.tiny_llm import make_tiny_llm


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> TextTokenizer:
    path = make_tiny_llm(tmp_path_factory.mktemp("tiny"))
    return TextTokenizer(path / "tokenizer.json")


def _stream(detok: IncrementalDetokenizer, ids: list[int]) -> list[str]:
    pieces = [detok.push(t) for t in ids]
    pieces.append(detok.flush())
    return pieces


def test_multibyte_characters_are_never_split(tokenizer: TextTokenizer) -> None:
    text = "Grüße 🌍 from 東京 — naïve café"
    ids = tokenizer.encode(text)
    # the emoji and the CJK characters are not in the tiny vocabulary: several byte tokens each
    assert len(ids) > len(text.split())
    pieces = _stream(IncrementalDetokenizer(tokenizer), ids)
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_stop_string_across_tokens_is_cut_and_never_shown(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("Hello world, how are you today?")
    detok = IncrementalDetokenizer(tokenizer, stop=("how are",))
    pieces = _stream(detok, ids)
    assert "".join(pieces) == "Hello world, "
    assert detok.stopped
    # no piece ever showed the beginning of the stop string
    assert not any("how" in p for p in pieces)


def test_partial_stop_prefix_is_released_when_it_does_not_match(
    tokenizer: TextTokenizer,
) -> None:
    ids = tokenizer.encode("Hello world, how is it")
    detok = IncrementalDetokenizer(tokenizer, stop=("how are",))
    assert "".join(_stream(detok, ids)) == "Hello world, how is it"
    assert not detok.stopped


def test_special_tokens_are_not_shown(tokenizer: TextTokenizer) -> None:
    eos = tokenizer.token_to_id("<|im_end|>")
    assert eos is not None
    ids = [*tokenizer.encode("Paris."), eos]
    assert "".join(_stream(IncrementalDetokenizer(tokenizer), ids)) == "Paris."
