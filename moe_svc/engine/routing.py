"""Expert routing counts: since start for `/v1/experts/stats`, and per request on demand.

`RoutingRecorder` is the model's `expert_stats` hook. Besides the totals it can
keep one forward's routing, so that the engine splits it by sequence and a
response can show which experts its tokens went to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from moe_svc.modeling import ExpertStats

__all__ = ["RoutingRecorder", "balance"]


class RoutingRecorder(ExpertStats):
    def __init__(self, num_layers: int, num_experts: int) -> None:
        super().__init__(num_layers, num_experts)
        self._captured: list[torch.Tensor] | None = None

    def update_layers(
        self,
        layers: list[int],
        selected_experts: list[torch.Tensor],
        token_mask: torch.Tensor | None = None,
    ) -> None:
        super().update_layers(layers, selected_experts, token_mask)
        if self._captured is not None:
            self._captured.extend(selected_experts)

    def capture(self) -> None:
        """Keep the routing of the next forward (call `per_sequence` after it)."""
        self._captured = []

    def per_sequence(self, batch_size: int, real: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, E) counts of the captured forward, whose tokens were B sequences in order.

        real (B, T) bool: the tokens to count (padding is routed too, but not counted).
        """
        captured, self._captured = self._captured or [], None
        if not captured:
            return torch.zeros(batch_size, self.num_layers, self.num_experts, dtype=torch.long)
        selected = torch.stack(captured)  # (L, B*T, k)
        L, N, k = selected.shape
        one_hot = F.one_hot(selected.view(L, batch_size, N // batch_size, k), self.num_experts)
        if real is not None:
            one_hot = one_hot * real[None, :, :, None, None]
        return one_hot.sum((2, 3)).transpose(0, 1)  # (B, L, E)


def balance(counts: list[list[int]]) -> list[dict[str, float]]:
    """Per layer: coefficient of variation of the expert loads and their normalised entropy.

    cv 0 and entropy 1 mean perfectly even loads; the upcycled model before
    specialisation routes by near-random router weights, so both sit near even.
    """
    out = []
    for row in counts:
        total = sum(row)
        n = len(row)
        if total == 0 or n < 2:
            out.append({"cv": 0.0, "entropy": 1.0, "max_share": 0.0})
            continue
        mean = total / n
        std = math.sqrt(sum((c - mean) ** 2 for c in row) / n)
        shares = [c / total for c in row]
        entropy = -sum(p * math.log(p) for p in shares if p > 0) / math.log(n)
        out.append(
            {"cv": round(std / mean, 4), "entropy": round(entropy, 4), "max_share": max(shares)}
        )
    return out
