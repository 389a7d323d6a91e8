"""Preallocated key/value cache with per-sequence lengths, for batched decoding.

Every layer owns two buffers `[B, n_kv_heads, max_len, head_dim]`. Row `b` is one
sequence: its tokens sit in slots `0 .. lengths[b]-1`, in order, and `valid[b, s]`
says whether slot `s` holds a real token or padding. A forward writes its `T` new
tokens into the next `T` slots of each row, so rows can be at different lengths
(continuous batching: a finished row is `reset` and refilled while the others keep
decoding) and padded prompts (left or right) need no special casing: padding slots
are simply never attended to. Position ids count real tokens only, so a padded
sequence gets exactly the positions it would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moe_svc.modeling.config import ModelConfig

__all__ = ["AttentionPlan", "KVCache", "plan_attention"]


@dataclass
class AttentionPlan:
    """Where one forward's tokens go and what each of them may attend to."""

    position_ids: torch.Tensor  # (B, T) rotary positions of the new tokens
    attn_mask: torch.Tensor | None  # (B, 1, T, S) bool, True = attend; None: see is_causal
    is_causal: bool  # without a mask: causal over T == S keys, or (False) every key visible
    slots: torch.Tensor | None  # (B, T) cache slot of each new token; None without a cache
    start: int | None  # all rows write at slots start..start+T-1 (fast path), else None
    kv_len: int  # S: keys attended over (cache slots 0..S-1, or the T new tokens)


def _mask(
    query_slots: torch.Tensor, key_valid: torch.Tensor, sliding_window: int | None
) -> torch.Tensor:
    """(B, 1, T, S) bool mask: causal over slots, padding keys hidden."""
    key_slots = torch.arange(key_valid.shape[1], device=key_valid.device)
    q = query_slots[:, :, None]  # (B, T, 1)
    mask = (key_slots <= q) & key_valid[:, None, :]
    if sliding_window is not None:
        mask &= key_slots > q - sliding_window
    # A padding query may see no valid key at all; letting it see itself keeps the
    # softmax finite (its output is ignored), where an empty row would give NaN.
    mask |= key_slots == q
    return mask[:, None]


def plan_attention(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cache: KVCache | None,
    sliding_window: int | None,
) -> AttentionPlan:
    """Positions and mask for a forward over `input_ids` (B, T).

    `attention_mask` (B, T) marks real tokens (1) and padding (0) among the *new*
    tokens; earlier tokens are remembered by the cache. Calling this with a cache
    advances the cache: the new tokens are counted as written.
    """
    B, T = input_ids.shape
    device = input_ids.device
    real = None if attention_mask is None else attention_mask.to(device=device, dtype=torch.bool)
    if real is not None and bool(real.all()):
        real = None
    if cache is None:
        if real is None:
            positions = torch.arange(T, device=device).expand(B, T)
            if sliding_window is None or sliding_window >= T:
                return AttentionPlan(positions, None, True, None, None, T)
            real = torch.ones(B, T, dtype=torch.bool, device=device)
        positions = (real.long().cumsum(-1) - 1).clamp_min(0)
        slots = torch.arange(T, device=device).expand(B, T)
        return AttentionPlan(positions, _mask(slots, real, sliding_window), False, None, None, T)
    return cache.plan(T, real, sliding_window)


class KVCache:
    """Per-layer key/value buffers `[B, n_kv_heads, max_len, head_dim]` plus per-row lengths."""

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)  # slots used
        self.positions = torch.zeros(
            batch_size, dtype=torch.long, device=device
        )  # next position id
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len

    @classmethod
    def from_config(
        cls,
        config: ModelConfig,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        assert config.head_dim is not None
        return cls(
            config.num_hidden_layers,
            batch_size,
            config.num_key_value_heads,
            max_len,
            config.head_dim,
            dtype,
            device,
        )

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    def reset(self, rows: list[int] | None = None) -> None:
        """Forget rows (all by default) so that new sequences can start there."""
        index = slice(None) if rows is None else torch.tensor(rows, dtype=torch.long)
        self.lengths[index] = 0
        self.positions[index] = 0
        self.valid[index] = False

    def narrow(self, start: int, length: int) -> KVCache:
        """A cache over rows start..start+length-1 sharing this one's storage.

        An engine prefills a new request into its row through such a view, then
        decodes all rows together through the full cache.
        """
        view = object.__new__(KVCache)
        view.keys = [k.narrow(0, start, length) for k in self.keys]
        view.values = [v.narrow(0, start, length) for v in self.values]
        view.lengths = self.lengths.narrow(0, start, length)
        view.positions = self.positions.narrow(0, start, length)
        view.valid = self.valid.narrow(0, start, length)
        view.max_len = self.max_len
        return view

    def drop_padding(self) -> None:
        """Move each row's real tokens to its first slots and free the padding slots.

        After a padded prefill a short prompt's row holds padding it would otherwise
        carry to the end, its context limit reached early. Positions are unchanged:
        they already count real tokens only.
        """
        for row in range(self.batch_size):
            length = int(self.lengths[row])
            kept = self.valid[row, :length].nonzero().flatten()
            n = kept.numel()
            if n == length:
                continue
            for buffers in (self.keys, self.values):
                for buf in buffers:
                    buf[row, :, :n] = buf[row, :, kept]
            self.valid[row, :length] = False
            self.valid[row, :n] = True
            self.lengths[row] = n

    def plan(self, T: int, real: torch.Tensor | None, sliding_window: int | None) -> AttentionPlan:
        """Reserve slots for T new tokens per row and say how they attend (see plan_attention)."""
        B = self.batch_size
        device = self.lengths.device
        lengths = self.lengths.tolist()
        end = max(lengths) + T
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} slots needed, max_len is {self.max_len}")
        offsets = torch.arange(T, device=device)
        slots = self.lengths[:, None] + offsets  # (B, T)
        ones = torch.ones(B, T, dtype=torch.long, device=device)
        counts = ones if real is None else real.long()
        positions = self.positions[:, None] + (counts.cumsum(-1) - 1).clamp_min(0)
        uniform = min(lengths) == max(lengths)
        start = lengths[0] if uniform else None
        if uniform:
            self.valid[:, start:end] = True if real is None else real
        else:
            rows = torch.arange(B, device=device)[:, None].expand(B, T)
            self.valid[rows, slots] = True if real is None else real
        self.lengths += T
        self.positions += counts.sum(-1)
        key_valid = self.valid[:, :end]
        no_window = sliding_window is None or sliding_window >= end
        if uniform and start == 0 and real is None and no_window:
            # fresh prefill without padding: plain causal attention
            return AttentionPlan(positions, None, True, slots, start, end)
        if T == 1 and no_window and bool(key_valid.all()):
            # decoding rows without padding: every cached key is visible
            return AttentionPlan(positions, None, False, slots, start, end)
        return AttentionPlan(
            positions, _mask(slots, key_valid, sliding_window), False, slots, start, end
        )

    def update(
        self, layer_idx: int, k: torch.Tensor, v: torch.Tensor, plan: AttentionPlan
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new keys/values (B, n_kv, T, hd); return all of them up to plan.kv_len."""
        k_buf, v_buf = self.keys[layer_idx], self.values[layer_idx]
        T = k.shape[2]
        if plan.start is not None:
            k_buf[:, :, plan.start : plan.start + T] = k
            v_buf[:, :, plan.start : plan.start + T] = v
        else:
            assert plan.slots is not None
            B = k.shape[0]
            rows = torch.arange(B, device=k.device)[:, None].expand(B, T)
            # advanced indices on dims 0 and 2 put the (B, T) index dims first
            k_buf[rows, :, plan.slots] = k.transpose(1, 2)
            v_buf[rows, :, plan.slots] = v.transpose(1, 2)
        return k_buf[:, :, : plan.kv_len], v_buf[:, :, : plan.kv_len]
