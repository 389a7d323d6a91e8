"""Cached incremental decoding gives the logits of a full forward over the whole sequence."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from moe_svc.modeling import CausalLM, KVCache, ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 1e-4


def _model(**overrides: Any) -> CausalLM:
    torch.manual_seed(0)
    config = ModelConfig(
        model_type="mixtral",
        vocab_size=89,
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        initializer_range=0.1,
        **overrides,
    )
    return CausalLM(config).eval()


def _alone(model: CausalLM, tokens: list[int]) -> torch.Tensor:
    """Reference: the sequence on its own, unpadded, no cache. -> (T, V)"""
    logits: torch.Tensor = model(torch.tensor([tokens]))
    return logits[0]


def _left_pad(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def test_left_padded_batch_prefill_then_decode_matches_full_forward() -> None:
    model = _model()
    g = torch.Generator().manual_seed(1)
    lengths, steps = [5, 9, 3], 4
    seqs = [torch.randint(0, 89, (n + steps,), generator=g).tolist() for n in lengths]
    prompts = [s[:n] for s, n in zip(seqs, lengths, strict=True)]
    refs = [_alone(model, s) for s in seqs]

    ids, mask = _left_pad(prompts)
    # without a cache, the padded batch already matches each sequence alone
    full = model(ids, attention_mask=mask)
    for row, n in enumerate(lengths):
        torch.testing.assert_close(full[row, -n:], refs[row][:n], atol=ATOL, rtol=0)

    cache = model.new_cache(batch_size=3, max_len=32)
    logits = model(ids, attention_mask=mask, cache=cache)
    for row, n in enumerate(lengths):
        torch.testing.assert_close(logits[row, -1], refs[row][n - 1], atol=ATOL, rtol=0)
    for step in range(steps):
        next_ids = torch.tensor([[s[n + step]] for s, n in zip(seqs, lengths, strict=True)])
        logits = model(next_ids, cache=cache)
        assert logits.shape == (3, 1, 89)
        for row, n in enumerate(lengths):
            torch.testing.assert_close(logits[row, 0], refs[row][n + step], atol=ATOL, rtol=0)
    assert cache.lengths.tolist() == [9 + steps] * 3
    assert cache.positions.tolist() == [n + steps for n in lengths]


@torch.no_grad()
def test_rows_at_different_lengths_decode_together_and_refill() -> None:
    """Continuous batching: rows prefilled separately, decoded together, one row restarted."""
    model = _model()
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 89, (n,), generator=g).tolist() for n in (10, 14, 8)]
    prompt_lengths = [4, 9, 2]
    refs = [_alone(model, s) for s in seqs]
    cache = model.new_cache(batch_size=3, max_len=24)
    for row, n in enumerate(prompt_lengths):
        view = cache.narrow(row, 1)
        logits = model(torch.tensor([seqs[row][:n]]), cache=view, logits_to_keep=1)
        torch.testing.assert_close(logits[0, -1], refs[row][n - 1], atol=ATOL, rtol=0)
    assert cache.lengths.tolist() == prompt_lengths

    def decode(
        rows_pos: list[int], rows_seq: list[list[int]], rows_ref: list[torch.Tensor]
    ) -> None:
        ids = torch.tensor([[s[p]] for s, p in zip(rows_seq, rows_pos, strict=True)])
        logits = model(ids, cache=cache)
        for row, p in enumerate(rows_pos):
            torch.testing.assert_close(logits[row, 0], rows_ref[row][p], atol=ATOL, rtol=0)

    for step in range(3):
        decode([n + step for n in prompt_lengths], seqs, refs)
    # row 1 finishes; a new request takes its place while rows 0 and 2 keep decoding
    new_seq = torch.randint(0, 89, (7,), generator=g).tolist()
    cache.reset([1])
    model(torch.tensor([new_seq[:3]]), cache=cache.narrow(1, 1))
    seqs[1], refs[1] = new_seq, _alone(model, new_seq)
    positions = [prompt_lengths[0] + 3, 3, prompt_lengths[2] + 3]
    for step in range(3):
        decode([p + step for p in positions], seqs, refs)


@torch.no_grad()
def test_chunked_prefill_matches_full_forward() -> None:
    model = _model()
    tokens = torch.randint(0, 89, (2, 12))
    full = model(tokens)
    cache = model.new_cache(batch_size=2, max_len=16)
    first = model(tokens[:, :5], cache=cache)
    second = model(tokens[:, 5:], cache=cache)
    torch.testing.assert_close(torch.cat([first, second], 1), full, atol=ATOL, rtol=0)


@torch.no_grad()
def test_sliding_window_cache_matches_full_forward() -> None:
    model = _model(sliding_window=4)
    tokens = torch.randint(0, 89, (2, 11))
    full = model(tokens)
    assert not torch.allclose(full, _model()(tokens), atol=1e-3)  # the window does matter
    cache = model.new_cache(batch_size=2, max_len=16)
    logits = [model(tokens[:, :6], cache=cache)]
    logits += [model(tokens[:, t : t + 1], cache=cache) for t in range(6, 11)]
    torch.testing.assert_close(torch.cat(logits, 1), full, atol=ATOL, rtol=0)


def test_cache_overflow_is_refused() -> None:
    model = _model()
    cache = model.new_cache(batch_size=1, max_len=4)
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache full"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_cache_shapes() -> None:
    cache = KVCache(num_layers=2, batch_size=3, num_kv_heads=2, max_len=10, head_dim=8)
    assert cache.keys[0].shape == (3, 2, 10, 8)
    assert cache.narrow(1, 2).keys[1].data_ptr() == cache.keys[1][1].data_ptr()
