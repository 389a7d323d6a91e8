"""moe_svc's own wire models (the OpenAI ones are in `common.contracts.openai`)."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ExpertStatsResponse", "LayerBalance"]


class LayerBalance(BaseModel):
    """How evenly one layer spreads its tokens over the experts."""

    cv: float  # coefficient of variation of the expert loads (0: perfectly even)
    entropy: float  # entropy of the load shares / log(E) (1: perfectly even)
    max_share: float  # the busiest expert's share of the layer's assignments


class ExpertStatsResponse(BaseModel):
    model: str
    num_layers: int
    num_experts: int
    top_k: int
    tokens: int  # tokens routed since start (each counts top_k assignments per layer)
    counts: list[list[int]]  # counts[layer][expert]: (token, expert) assignments
    balance: list[LayerBalance]
    mean_cv: float
    mean_entropy: float
