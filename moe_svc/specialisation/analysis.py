"""Routing analysis: which experts each domain's tokens go to, and how much the
choice of expert tells about the domain (mutual information)."""

from __future__ import annotations

import torch

__all__ = ["RoutingCounts", "mutual_information", "upcycled_routers"]


def mutual_information(joint: torch.Tensor) -> float:
    """I(D; X) in bits from a (domains, experts) count table."""
    p = joint.double() / joint.sum().clamp_min(1)
    pd, px = p.sum(1, keepdim=True), p.sum(0, keepdim=True)
    mask = p > 0
    return float((p[mask] * torch.log2(p[mask] / (pd @ px)[mask])).sum())


def upcycled_routers(num_layers: int, num_experts: int, hidden_size: int) -> list[torch.Tensor]:
    """The routers `moe_svc.build_default.upcycle` draws, without building the experts.

    Same generator, seed, order and scale: before specialisation the upcycled model's
    hidden states equal the dense model's, so dense hidden states times these routers
    give exactly the untrained upcycled model's routing.
    """
    from moe_svc.build_default import ROUTER_INIT_STD, ROUTER_SEED

    generator = torch.Generator().manual_seed(ROUTER_SEED)
    return [
        torch.randn(num_experts, hidden_size, generator=generator) * ROUTER_INIT_STD
        for _ in range(num_layers)
    ]


class RoutingCounts:
    """Per layer, per domain, per expert: top-1 choices and top-k assignments."""

    def __init__(self, num_layers: int, num_domains: int, num_experts: int) -> None:
        self.top1 = torch.zeros(num_layers, num_domains, num_experts, dtype=torch.long)
        self.topk = torch.zeros(num_layers, num_domains, num_experts, dtype=torch.long)
        self.num_experts = num_experts

    def add(self, layer: int, domain: int, router_logits: torch.Tensor, top_k: int) -> None:
        """router_logits (N, E) of one layer for N tokens of one domain."""
        E = self.num_experts
        logits = router_logits.float()
        self.top1[layer, domain] += torch.bincount(logits.argmax(-1), minlength=E)
        selected = logits.topk(top_k, dim=-1).indices.reshape(-1)
        self.topk[layer, domain] += torch.bincount(selected, minlength=E)

    def shares(self) -> torch.Tensor:
        """(domains, experts): each domain's share of top-k assignments, mean over layers."""
        per_layer = self.topk.double() / self.topk.sum(-1, keepdim=True).clamp_min(1)
        return per_layer.mean(0)

    def mutual_information(self) -> float:
        """I(domain; top-1 expert) in bits, averaged over layers."""
        return sum(mutual_information(layer) for layer in self.top1) / len(self.top1)

    def mutual_information_per_layer(self) -> list[float]:
        return [mutual_information(layer) for layer in self.top1]

    def favourite_experts(self) -> list[int]:
        """Each domain's expert with the largest share."""
        return self.shares().argmax(-1).tolist()
