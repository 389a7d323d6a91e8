"""The shared MiniLM embedder computes what transformers' BertModel + mean pooling does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertModel

from common.minilm import MiniLMEmbedder, embedding_model_dir, load_embedding_tokenizer

TEXTS = [
    "Convert 72 F to C",
    "hi",
    "A farmer has 30 heads and 74 legs; how many cows?",
    "word " * 400,  # longer than the model's 256-token window: truncated
]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=2)


def test_the_lean_encoder_matches_transformers(embedder: MiniLMEmbedder) -> None:
    model = BertModel.from_pretrained(str(embedding_model_dir()), add_pooling_layer=False).eval()
    tokenizer = load_embedding_tokenizer()
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(TEXTS)
    ids = torch.tensor([e.ids for e in encoded])
    mask = torch.tensor([e.attention_mask for e in encoded])
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=1)

    got = embedder.encode(TEXTS)
    assert got.shape == (4, 384) and got.dtype == np.float32
    assert np.abs(got - reference.numpy()).max() < 1e-5


def test_batches_report_progress_and_keep_input_order(embedder: MiniLMEmbedder) -> None:
    seen: list[int] = []
    together = embedder.encode(TEXTS, progress=seen.append)
    one_by_one = np.stack([embedder.encode([t])[0] for t in TEXTS])

    assert seen == [2, 2]
    assert np.abs(together - one_by_one).max() < 1e-5
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_paraphrases_are_closer_than_unrelated_text(embedder: MiniLMEmbedder) -> None:
    a, b, c = embedder.encode(["a running shoe", "trainers for jogging", "the tax law of 1862"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_token_counts_exclude_special_tokens(embedder: MiniLMEmbedder) -> None:
    assert embedder.count_tokens(["hello world", ""]) == [2, 0]


def test_the_bf16_encoder_gives_the_same_vectors(embedder: MiniLMEmbedder) -> None:
    # bf16 is what `auto` runs where the CPU has AMX; retrieval and intent routing
    # must not tell the two apart.
    bf16 = MiniLMEmbedder(batch_size=2, dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16
    got = bf16.encode(TEXTS)
    assert got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * embedder.encode(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.999


def test_auto_is_bf16_only_where_the_cpu_runs_it_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from common import minilm

    monkeypatch.setattr(minilm, "has_fast_bf16", lambda: False)
    assert minilm.encoder_dtype("auto") == torch.float32
    monkeypatch.setattr(minilm, "has_fast_bf16", lambda: True)
    assert minilm.encoder_dtype("auto") == torch.bfloat16
    assert minilm.encoder_dtype("float32") == torch.float32
