"""Serving layout of upcycled experts: one shared SwiGLU plus low-rank per-expert deltas.

Sparse upcycling starts every expert as a copy of the dense FFN and expert
specialisation adds low-rank deltas, so expert e's weights are
`W_e = W_base + B_e @ A_e` with a small rank. Mixtral's block computes

    y = sum_j w_j * down_e(silu(gate_e x) * up_e x),  e = e_j the k chosen experts

and with that structure, exactly (up to float rounding):

- `gate_e x = W_gate x + B_e (A_e x)`: the shared product once per token, not k times;
- `sum_j w_j down_e h_j = W_down (sum_j w_j h_j) + sum_j w_j B_e (A_e h_j)`: one shared
  product per token for the k experts together.

A decode step then reads the shared weights once per layer whatever the batch
and the experts chosen, instead of up to all E experts' weights: the MoE decodes
at the cost of the dense model plus the low-rank terms. Routing is computed as
Mixtral computes it (and counted for the expert statistics).

`convert_experts` finds the structure at load time and checks it: a layer whose
experts are not the base plus a delta of rank <= `max_rank` that reconstructs
them keeps the stock sorted-dispatch block.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.kernels.projections import Projection
from moe_svc.kernels.skinny import INT4, MAX_ROWS, MoeWeights, SkinnyKernel, unpack
from moe_svc.modeling import CausalLM, SparseMoeBlock
from moe_svc.modeling.moe import route

__all__ = ["MAX_RANK", "SharedBaseMoeBlock", "convert_experts", "shared_base_factors"]

logger = logging.getLogger("moe_svc.kernels.shared_experts")

# the largest per-expert delta rank served in the shared-base layout
MAX_RANK = 64
# relative reconstruction error accepted for a low-rank factorisation (fp32 rounding)
RECONSTRUCTION_TOL = 1e-5
_EPS32 = float(torch.finfo(torch.float32).eps)


def _low_rank(
    deltas: torch.Tensor, max_rank: int, base_scale: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """deltas (E, out, in) -> (B (E, out, r), A (E, r, in)) with B @ A == deltas, or None.

    `base_scale` is max |W_base|: a delta stored as `W_e = fl(W_base + B_e A_e)` carries
    rounding noise of up to an ulp of the base weights, full rank but tiny. Singular values
    under that noise's spectral bound are dropped, and the reconstruction may miss by it.
    """
    E, n_out, n_in = deltas.shape
    scale = float(deltas.abs().max())
    if scale == 0.0:
        return None  # no deltas at all: the caller keeps only the base
    rounding = _EPS32 * base_scale  # per-element bound of the storage rounding (2 half-ulps)
    noise_floor = rounding * (n_out**0.5 + n_in**0.5)  # spectral norm bound of that noise
    tolerance = max(RECONSTRUCTION_TOL * scale, 2 * rounding)
    factors = []
    for e in range(E):
        delta = deltas[e]
        if not bool(delta.any()):
            factors.append((delta.new_zeros(n_out, 0), delta.new_zeros(0, n_in)))
            continue
        # Few probes first (specialisation deltas have rank ~16), all of max_rank if needed.
        factor = None
        for probes in (min(24, max_rank) + 8, max_rank + 8):
            factor = _factor(delta, min(probes, n_out, n_in), noise_floor, tolerance)
            if factor is not None:
                break
        if factor is None or factor[0].shape[1] > max_rank:
            return None
        factors.append(factor)
    r = max(1, max(b.shape[1] for b, _ in factors))
    B = deltas.new_zeros(E, n_out, r)
    A = deltas.new_zeros(E, r, n_in)
    for e, (b, a) in enumerate(factors):
        B[e, :, : b.shape[1]] = b.to(deltas.dtype)
        A[e, : a.shape[0]] = a.to(deltas.dtype)
    return B, A


def _factor(
    delta: torch.Tensor, probes: int, noise_floor: float, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(B, A) with B @ A == delta (out, in) within `tolerance`, from `probes` random probes.

    Randomised range finder (Halko et al. 2011), one pass: an exactly low-rank delta's
    range is caught whole by more probes than its rank; the reconstruction check refuses
    anything else. fp32 suffices: its error is ~eps * |delta|, far under the storage
    rounding when the delta is small next to the base, and under the relative tolerance
    otherwise.
    """
    omega = torch.randn(delta.shape[1], probes, generator=torch.Generator().manual_seed(0))
    basis, _ = torch.linalg.qr(delta @ omega.to(delta.dtype))  # (out, probes)
    u, s, vh = torch.linalg.svd(basis.T @ delta, full_matrices=False)  # (probes, in): small
    rank = int((s > max(float(s[0]) * 1e-6, noise_floor)).sum())
    if rank == probes:
        return None  # the range may be larger than what was probed
    b, a = (basis @ u[:, :rank]) * s[:rank], vh[:rank]
    if float((b @ a - delta).abs().max()) > tolerance:
        return None
    return b, a


def _base_expert(gate_up: torch.Tensor, down: torch.Tensor) -> int:
    """The expert to factor the others around: one left equal to another (the dense FFN an
    upcycled model kept unspecialised), else expert 0."""
    E = gate_up.shape[0]
    for e in range(E):
        for other in range(e + 1, E):
            if torch.equal(gate_up[e], gate_up[other]) and torch.equal(down[e], down[other]):
                return e
    return 0


class SharedBaseMoeBlock(SparseMoeBlock):
    """A SparseMoeBlock whose experts are a shared SwiGLU plus optional low-rank deltas."""

    def __init__(
        self,
        block: SparseMoeBlock,
        base_gate_up: torch.Tensor,  # (2I, C)
        base_down: torch.Tensor,  # (C, I)
        gate_up_delta: tuple[torch.Tensor, torch.Tensor] | None,  # B (E, 2I, r), A (E, r, C)
        down_delta: tuple[torch.Tensor, torch.Tensor] | None,  # B (E, C, r), A (E, r, I)
        kernel: SkinnyKernel | None = None,
    ) -> None:
        nn.Module.__init__(self)  # not SparseMoeBlock's: no stacked expert weights
        self.top_k = block.top_k
        self.num_experts = block.num_experts
        self.jitter_noise = block.jitter_noise
        self.capacity_factor = block.capacity_factor
        gate: nn.Module = block.gate
        if kernel is not None:
            gate = Projection(block.gate.weight, kernel)
        self.gate = gate  # type: ignore[assignment]  # a Projection serves as the router
        self.intermediate_size = base_down.shape[1]
        self.base_gate_up = Projection(base_gate_up, kernel)
        self.base_down = Projection(base_down, kernel)
        # Deltas as two dense products over ALL experts' factors, the unchosen experts'
        # rank columns masked to zero: every factor is read once per step, where gathering
        # each (token, choice)'s factors copied N*k of them (a 3 MB copy per layer at N=8).
        #   x A_all^T            (N, E*r)   every expert's A_e x
        #   masked B_all^T       (N*k, out) the chosen expert's B_e A_e x per pair
        self.gate_up_a, self.gate_up_b = _flat_factors(gate_up_delta, kernel)
        self.down_a, self.down_b = _flat_factors(down_delta, kernel)
        self.rank_gate_up = 0 if gate_up_delta is None else gate_up_delta[0].shape[2]
        self.rank_down = 0 if down_delta is None else down_delta[0].shape[2]
        # decode steps: the whole block in one native call (SkinnyKernel.moe)
        self.kernel = kernel
        self.fused = self._fused_weights()
        self.train(block.training)  # nn.Module.__init__ set training mode

    def _fused_weights(self) -> MoeWeights | None:
        projections: list[nn.Module | None] = [self.gate, self.base_gate_up, self.base_down]
        projections += [self.gate_up_a, self.gate_up_b, self.down_a, self.down_b]
        if self.kernel is None or not all(
            p is None
            or isinstance(p, PackedFactorT)
            or (isinstance(p, Projection) and p.weight is not None)
            for p in projections
        ):
            return None

        def weight(p: nn.Module | None) -> torch.Tensor | None:
            return None if p is None else p.get_parameter("weight")

        def per_expert_t(p: nn.Module | None) -> torch.Tensor | None:
            """B_all (out, E*r) -> (E, r, out)."""
            if isinstance(p, PackedFactorT):
                return p.packed.view(self.num_experts, -1, p.packed.shape[1])
            if not isinstance(p, Projection) or p.weight is None:
                return None
            n_out = p.weight.shape[0]
            return p.weight.view(n_out, self.num_experts, -1).permute(1, 2, 0).contiguous()

        gate, gate_up, down = weight(self.gate), weight(self.base_gate_up), weight(self.base_down)
        assert gate is not None and gate_up is not None and down is not None
        return MoeWeights(
            gate=gate,
            gate_up=gate_up,
            down=down,
            top_k=self.top_k,
            gate_up_a=weight(self.gate_up_a),
            gate_up_bt=per_expert_t(self.gate_up_b),
            down_a=weight(self.down_a),
            down_bt=per_expert_t(self.down_b),
        )

    def _chosen(self, projected: torch.Tensor, keep: torch.Tensor, rank: int) -> torch.Tensor:
        """(N, k, E*r) rank columns of all experts -> only those of each pair's expert.

        keep (N, k, E, 1): one-hot of each pair's expert.
        """
        N, k = keep.shape[:2]
        masked = projected.view(N, k, self.num_experts, rank) * keep
        return masked.view(N, k, self.num_experts * rank)

    def forward(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> output (B, T, C), router_logits (B*T, E), selected_experts (B*T, k)."""
        B, T, C = hidden_states.shape
        x = hidden_states.reshape(-1, C)  # (N, C)
        if (
            self.fused is not None
            and self.kernel is not None
            and x.shape[0] <= MAX_ROWS
            and x.dtype == torch.float32
        ):
            out, router_logits, selected = self.kernel.moe(x, self.fused)
            return out.view(B, T, C), router_logits, selected
        router_logits = self.gate(x)  # (N, E)
        routing_weights, selected = route(router_logits, self.top_k)  # (N, k) each
        inner = self.intermediate_size
        gate_up = self.base_gate_up(x)  # (N, 2I)
        w = routing_weights.to(x.dtype)
        if self.gate_up_a is None and self.down_a is None:
            # identical experts: sum_j w_j expert(x) = (sum_j w_j) expert(x)
            h = F.silu(gate_up[:, :inner]) * gate_up[:, inner:]  # (N, I)
            out = self.base_down(h) * w.sum(-1, keepdim=True)
            return out.view(B, T, C), router_logits, selected
        N, k = selected.shape
        keep = F.one_hot(selected, self.num_experts).to(x.dtype)[..., None]  # (N, k, E, 1)
        if self.gate_up_a is not None and self.gate_up_b is not None:
            xa = self.gate_up_a(x)[:, None, :].expand(N, k, -1)  # (N, k, E*r)
            delta = self.gate_up_b(self._chosen(xa, keep, self.rank_gate_up))  # (N, k, 2I)
            per_pair = gate_up[:, None, :] + delta
        else:
            per_pair = gate_up[:, None, :].expand(N, k, 2 * inner)
        h = F.silu(per_pair[..., :inner]) * per_pair[..., inner:]  # (N, k, I)
        hw = h * w[:, :, None]  # routing weight on the I-wide hidden: fewer flops
        out = self.base_down(hw.sum(1))  # (N, C)
        if self.down_a is not None and self.down_b is not None:
            ha = self._chosen(self.down_a(hw), keep, self.rank_down)  # (N, k, E*r)
            out = out + self.down_b(ha.sum(1))
        return out.view(B, T, C), router_logits, selected


def _flat_factors(
    factors: tuple[torch.Tensor, torch.Tensor] | None, kernel: SkinnyKernel | None
) -> tuple[Projection | None, nn.Module | None]:
    """B (E, out, r), A (E, r, in) -> products by A_all (E*r, in) and B_all (out, E*r)."""
    if factors is None:
        return None, None
    b, a = factors
    E, n_out, r = b.shape
    a_all = a.reshape(E * r, a.shape[2])
    if kernel is not None and kernel.weight_dtype in (torch.int8, INT4):
        return Projection(a_all, kernel), PackedFactorT(b, kernel)
    b_all = b.permute(1, 0, 2).reshape(n_out, E * r)
    return Projection(a_all, kernel), Projection(b_all, kernel)


class PackedFactorT(nn.Module):
    """The B factors of int8 or int4 serving: B_e^T's rows (E*r, out) packed with their
    scales, the layout the fused block reads (its axpys), and the product x @ B_all^T for
    rows it does not take (prefill), over the same values: decode and prefill agree."""

    def __init__(self, b: torch.Tensor, kernel: SkinnyKernel) -> None:  # b (E, out, r)
        super().__init__()
        E, n_out, r = b.shape
        rows = b.detach().permute(0, 2, 1).reshape(E * r, n_out)  # row (e, t): B_e[:, t]
        self.packed = nn.Parameter(kernel.store(rows), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., E*r) -> (..., out)
        return x @ unpack(self.packed).to(x.dtype)


_Factors = tuple[torch.Tensor, torch.Tensor]


def shared_base_factors(
    gate_up: torch.Tensor, down: torch.Tensor, max_rank: int = MAX_RANK
) -> tuple[int, _Factors | None, _Factors | None] | None:
    """One layer's stacked experts as (base expert, gate_up deltas, down deltas), or None.

    gate_up (E, 2I, C), down (E, C, I). The deltas are B (E, out, r), A (E, r, in), None
    where all experts share that product; None as a whole where the experts differ from
    the base by more than a rank-`max_rank` delta.
    """
    base = _base_expert(gate_up, down)
    base_gate_up, base_down = gate_up[base], down[base]
    gu_deltas, d_deltas = gate_up - base_gate_up, down - base_down
    gu_factors = _low_rank(gu_deltas, max_rank, float(base_gate_up.abs().max()))
    d_factors = _low_rank(d_deltas, max_rank, float(base_down.abs().max()))
    if (gu_factors is None and bool(gu_deltas.any())) or (
        d_factors is None and bool(d_deltas.any())
    ):
        return None
    return base, gu_factors, d_factors


def convert_experts(
    model: CausalLM, max_rank: int = MAX_RANK, kernel: SkinnyKernel | None = None
) -> int:
    """Swap MoE blocks for the shared-base layout where it is exact; returns how many.

    kernel: the decode kernel for the blocks' products (None: torch's matmul).
    """
    converted = 0
    for layer in model.model.layers:
        block = layer.mlp
        if not isinstance(block, SparseMoeBlock) or isinstance(block, SharedBaseMoeBlock):
            continue
        gate_up = block.experts.gate_up_proj.detach()  # (E, 2I, C)
        down = block.experts.down_proj.detach()  # (E, C, I)
        found = shared_base_factors(gate_up, down, max_rank)
        if found is None:
            continue  # experts differ beyond low rank: keep the stock block
        base, gu_factors, d_factors = found
        layer.mlp = SharedBaseMoeBlock(
            block, gate_up[base].clone(), down[base].clone(), gu_factors, d_factors, kernel
        )
        converted += 1
    if converted:
        logger.info(
            "experts as shared base plus low-rank deltas",
            extra={"layers": converted, "of": len(model.model.layers)},
        )
    return converted
