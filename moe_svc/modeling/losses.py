"""Router losses (Switch/Mixtral load balancing, ST-MoE z-loss) and expert load statistics."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["ExpertStats", "load_balancing_loss", "router_z_loss"]


def _flat_mask(attention_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    if attention_mask is None:
        return None
    return attention_mask.reshape(-1).to(device=device, dtype=torch.float32)


def load_balancing_loss(
    router_logits: Sequence[torch.Tensor],
    num_experts: int,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch Transformer auxiliary loss, as Mixtral computes it: E * sum_e f_e * P_e.

    f_e is the fraction of (token, slot) assignments that go to expert e (summed over
    the k slots, so sum_e f_e = k) and P_e the mean router probability of expert e,
    both over the tokens of all layers together; padding tokens
    (attention_mask == 0) are left out. It is minimal when routing is uniform.
    router_logits: one (B*T, E) tensor per MoE layer.
    """
    logits = torch.cat([layer.float() for layer in router_logits])  # (L*N, E)
    probs = F.softmax(logits, dim=-1)
    _, selected_experts = torch.topk(probs, top_k, dim=-1)  # (L*N, k)
    assignments = F.one_hot(selected_experts, num_experts).sum(1).float()  # (L*N, E)
    mask = _flat_mask(attention_mask, logits.device)
    if mask is None:
        tokens_per_expert = assignments.mean(0)
        prob_per_expert = probs.mean(0)
    else:
        mask = mask.repeat(len(router_logits))[:, None]  # same padding in every layer
        tokens_per_expert = (assignments * mask).sum(0) / mask.sum()
        prob_per_expert = (probs * mask).sum(0) / mask.sum()
    return num_experts * torch.sum(tokens_per_expert * prob_per_expert)


def router_z_loss(
    router_logits: Sequence[torch.Tensor], attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """ST-MoE z-loss: mean over tokens (of all layers) of logsumexp(router logits)^2.

    Penalising large logits keeps the fp32 router softmax well conditioned.
    """
    logits = torch.cat([layer.float() for layer in router_logits])  # (L*N, E)
    z = torch.logsumexp(logits, dim=-1).square()  # (L*N,)
    mask = _flat_mask(attention_mask, logits.device)
    if mask is None:
        return z.mean()
    mask = mask.repeat(len(router_logits))
    return (z * mask).sum() / mask.sum()


class ExpertStats:
    """Tokens routed to each expert of each MoE layer, accumulated across forwards.

    Counts (token, slot) assignments, so each token adds k per layer. Thread-safe:
    the service updates it from its engine thread and reads it from request handlers.
    """

    def __init__(self, num_layers: int, num_experts: int) -> None:
        self.num_layers = num_layers
        self.num_experts = num_experts
        self._counts = torch.zeros(num_layers, num_experts, dtype=torch.long)
        self._tokens = 0
        self._lock = threading.Lock()

    def update(
        self, layer_idx: int, selected_experts: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> None:
        """Add one layer's routing: selected_experts (N, k); token_mask (N,) drops padding."""
        self.update_layers([layer_idx], [selected_experts], token_mask)

    def update_layers(
        self,
        layers: list[int],
        selected_experts: list[torch.Tensor],
        token_mask: torch.Tensor | None = None,
    ) -> None:
        """Add one forward's routing of several layers (each (N, k)) in one count.

        A decode step is bound by its count of ops: one count for all layers, not
        one per layer.
        """
        selected = torch.stack(selected_experts)  # (L, N, k)
        if token_mask is not None:
            selected = selected[:, token_mask.reshape(-1).bool()]
        L, N, _ = selected.shape
        counts = F.one_hot(selected.reshape(L, -1), self.num_experts).sum(1).cpu()  # (L, E)
        index = torch.tensor(layers, dtype=torch.long)
        with self._lock:
            self._counts.index_add_(0, index, counts)
            if 0 in layers:
                self._tokens += N

    def reset(self) -> None:
        with self._lock:
            self._counts.zero_()
            self._tokens = 0

    @property
    def counts(self) -> torch.Tensor:
        """(num_layers, num_experts) int64 copy."""
        with self._lock:
            return self._counts.clone()

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: {"tokens", "num_layers", "num_experts", "counts": [[...]]}."""
        with self._lock:
            return {
                "tokens": self._tokens,
                "num_layers": self.num_layers,
                "num_experts": self.num_experts,
                "counts": self._counts.tolist(),
            }

    def load_fractions(self) -> list[list[float]]:
        """Per layer, each expert's share of the assignments (rows sum to 1; zeros if empty)."""
        counts = self.counts.double()
        totals = counts.sum(-1, keepdim=True).clamp_min(1)
        return (counts / totals).tolist()

    def format_table(self) -> str:
        """Human-readable per-layer load in percent, for training logs."""
        header = "layer " + " ".join(f"e{e:<5d}" for e in range(self.num_experts))
        rows = [header]
        for layer, fractions in enumerate(self.load_fractions()):
            rows.append(f"{layer:<5d} " + " ".join(f"{100 * f:5.1f}%" for f in fractions))
        return "\n".join(rows)
