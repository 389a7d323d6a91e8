"""Low-rank experts over a shared dense SwiGLU FFN, the form the experts train in.

`LoRAExpertFFN` replaces a dense model's `mlp`: expert e is the dense FFN plus
`scaling * B_e @ A_e` on each of its three projections, and a router picks the
top-k experts per token as Mixtral does. Keeping one copy of the dense weights
instead of eight makes the routed forward cost about one dense FFN: the base
gate/up products are shared by all experts, and since the down projection is
linear, `sum_j w_j * down(h_j)` is one base product of the weighted `sum_j w_j h_j`
plus the experts' low-rank terms.

The exported artefact (`export_artefact`) uses build_default's key format:
`layers.{i}.experts.{e}.{w1,w2,w3}.lora_a` (r, in), `.lora_b` (out, r) with the
scaling folded into `lora_b`, and `layers.{i}.router.weight` (E, C).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from moe_svc.modeling import CausalLM
from moe_svc.modeling.layers import MLP
from moe_svc.modeling.moe import route

__all__ = [
    "LoRAExpertFFN",
    "expert_ffns",
    "export_artefact",
    "install_experts",
    "load_artefact",
    "load_trainable_state",
    "set_mode",
    "trainable_state",
]

# projection name in the artefact -> (attribute of MLP, LoRA attribute prefix)
PROJECTIONS = {"w1": "gate", "w3": "up", "w2": "down"}


class LoRAExpertFFN(nn.Module):
    """Dense SwiGLU + E low-rank expert deltas + a top-k router.

    mode: "base" runs the dense FFN alone; an int e runs expert e for every token
    (Branch-Train-MiX's branch step: a dense path); "routed" runs the top-k MoE.
    """

    def __init__(
        self, mlp: MLP, num_experts: int, rank: int, alpha: float, top_k: int, seed: int
    ) -> None:
        super().__init__()
        self.base = mlp
        for p in self.base.parameters():
            p.requires_grad_(False)
        C, inner = mlp.gate_proj.in_features, mlp.gate_proj.out_features
        self.num_experts, self.rank, self.top_k = num_experts, rank, top_k
        self.scaling = alpha / rank
        generator = torch.Generator().manual_seed(seed)

        def a_init(fan_in: int) -> nn.ParameterList:
            # LoRA: A uniform with bound 1/sqrt(fan_in) (kaiming, a=sqrt(5)), B zero, so
            # every expert starts equal to the dense FFN
            bound = 1.0 / math.sqrt(fan_in)
            return nn.ParameterList(
                nn.Parameter((torch.rand(rank, fan_in, generator=generator) * 2 - 1) * bound)
                for _ in range(num_experts)
            )

        def b_init(fan_out: int) -> nn.ParameterList:
            return nn.ParameterList(
                nn.Parameter(torch.zeros(fan_out, rank)) for _ in range(num_experts)
            )

        self.gate_a, self.gate_b = a_init(C), b_init(inner)
        self.up_a, self.up_b = a_init(C), b_init(inner)
        self.down_a, self.down_b = a_init(inner), b_init(C)
        self.router = nn.Parameter(torch.zeros(num_experts, C))
        self.mode: str | int = "base"
        self.last_router_logits: torch.Tensor | None = None  # (N, E) of the last routed call
        self.last_selected: torch.Tensor | None = None  # (N, k)
        # set to a list to collect the FFN inputs (the mix step's hidden states)
        self.captured: list[torch.Tensor] | None = None

    def expert_parameters(self, expert: int) -> list[nn.Parameter]:
        return [
            getattr(self, f"{name}_{ab}")[expert]
            for name in ("gate", "up", "down")
            for ab in ("a", "b")
        ]

    def _lora(self, x: torch.Tensor, name: str, expert: int) -> torch.Tensor:
        a, b = getattr(self, f"{name}_a")[expert], getattr(self, f"{name}_b")[expert]
        out: torch.Tensor = F.linear(F.linear(x, a), b) * self.scaling
        return out

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.captured is not None:
            self.captured.append(hidden_states.detach().float())
        if self.mode == "base":
            dense: torch.Tensor = self.base(hidden_states)
            return dense
        if self.mode == "routed":
            return self._routed(hidden_states)
        e = int(self.mode)
        base = self.base
        g = base.gate_proj(hidden_states) + self._lora(hidden_states, "gate", e)
        u = base.up_proj(hidden_states) + self._lora(hidden_states, "up", e)
        h = F.silu(g) * u
        out: torch.Tensor = base.down_proj(h) + self._lora(h, "down", e)
        return out

    def _routed(self, hidden_states: torch.Tensor) -> torch.Tensor:
        B, T, C = hidden_states.shape
        x = hidden_states.reshape(-1, C)  # (N, C)
        router_logits = F.linear(x.float(), self.router)  # (N, E), fp32 as Mixtral
        routing_weights, selected = route(router_logits, self.top_k)  # (N, k)
        self.last_router_logits, self.last_selected = router_logits, selected
        base_g, base_u = self.base.gate_proj(x), self.base.up_proj(x)  # (N, I) shared
        flat = selected.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        token_idx = order // self.top_k
        w_sorted = routing_weights.reshape(-1)[order][:, None]
        h_sum = torch.zeros(x.shape[0], base_g.shape[1], dtype=base_g.dtype, device=x.device)
        extra = torch.zeros(x.shape[0], C, dtype=base_g.dtype, device=x.device)
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            rows, w = token_idx[start : start + n], w_sorted[start : start + n]
            xe = x.index_select(0, rows)
            g = base_g.index_select(0, rows) + self._lora(xe, "gate", e)
            u = base_u.index_select(0, rows) + self._lora(xe, "up", e)
            h = (F.silu(g) * u * w).to(h_sum.dtype)  # (n, I), weighted
            h_sum = h_sum.index_add(0, rows, h)
            extra = extra.index_add(0, rows, self._lora(h, "down", e).to(extra.dtype))
            start += n
        out: torch.Tensor = self.base.down_proj(h_sum) + extra
        return out.view(B, T, C)

    @torch.no_grad()
    def delta(self, expert: int, proj: str) -> torch.Tensor:
        """The dense weight delta `scaling * B @ A` of one projection (w1, w2 or w3)."""
        name = PROJECTIONS[proj]
        a, b = getattr(self, f"{name}_a")[expert], getattr(self, f"{name}_b")[expert]
        delta: torch.Tensor = (b.float() * self.scaling) @ a.float()
        return delta


def install_experts(
    model: CausalLM, num_experts: int, rank: int, alpha: float, top_k: int, seed: int
) -> list[LoRAExpertFFN]:
    """Freeze a dense model and give every layer low-rank experts and a router."""
    if model.config.is_moe:
        raise ValueError("install_experts needs the dense (llama) model")
    for p in model.parameters():
        p.requires_grad_(False)
    ffns = []
    for i, layer in enumerate(model.model.layers):
        assert isinstance(layer.mlp, MLP)
        ffn = LoRAExpertFFN(layer.mlp, num_experts, rank, alpha, top_k, seed + 1000 * i)
        layer.mlp = ffn
        ffns.append(ffn)
    return ffns


def expert_ffns(model: CausalLM) -> list[LoRAExpertFFN]:
    return [layer.mlp for layer in model.model.layers if isinstance(layer.mlp, LoRAExpertFFN)]


def set_mode(ffns: list[LoRAExpertFFN], mode: str | int) -> None:
    for ffn in ffns:
        ffn.mode = mode


def trainable_state(ffns: list[LoRAExpertFFN]) -> dict[str, torch.Tensor]:
    """The LoRA factors and routers of all layers (what a run checkpoints)."""
    state = {}
    for i, ffn in enumerate(ffns):
        for name, tensor in ffn.state_dict().items():
            if not name.startswith("base."):
                state[f"{i}.{name}"] = tensor.detach().clone()
    return state


def load_trainable_state(ffns: list[LoRAExpertFFN], state: dict[str, torch.Tensor]) -> None:
    for i, ffn in enumerate(ffns):
        prefix = f"{i}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        missing, unexpected = ffn.load_state_dict(own, strict=False)
        assert not unexpected and all(m.startswith("base.") for m in missing)


def export_artefact(
    ffns: list[LoRAExpertFFN],
    path: Path,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype = torch.bfloat16,
    dense_experts: frozenset[int] = frozenset(),
) -> dict[str, torch.Tensor]:
    """Write the deltas (scaling folded into lora_b) and routers; bf16 keeps it small.

    Experts in `dense_experts` are written without a delta: they compute the dense FFN
    (their router rows still send their domain's tokens to them).
    """
    tensors: dict[str, torch.Tensor] = {}
    for i, ffn in enumerate(ffns):
        tensors[f"layers.{i}.router.weight"] = ffn.router.detach().to(dtype)
        for e in range(ffn.num_experts):
            if e in dense_experts:
                continue
            for proj, name in PROJECTIONS.items():
                a = getattr(ffn, f"{name}_a")[e].detach()
                b = getattr(ffn, f"{name}_b")[e].detach() * ffn.scaling
                key = f"layers.{i}.experts.{e}.{proj}"
                tensors[f"{key}.lora_a"] = a.to(dtype).contiguous()
                tensors[f"{key}.lora_b"] = b.to(dtype).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata or {})
    tmp.chmod(0o644)  # safetensors writes 0600; the artefact is committed and read by builds
    tmp.replace(path)
    return tensors


@torch.no_grad()
def load_artefact(ffns: list[LoRAExpertFFN], path: Path) -> frozenset[int]:
    """Load what `export_artefact` wrote back into the layers; returns the dense experts.

    An expert without deltas in the artefact keeps B = 0 (the dense FFN). The rank
    must be the artefact's.
    """
    tensors = load_file(str(path))
    present = set()
    for i, ffn in enumerate(ffns):
        ffn.router.copy_(tensors[f"layers.{i}.router.weight"].float())
        for e in range(ffn.num_experts):
            key = f"layers.{i}.experts.{e}"
            if f"{key}.w1.lora_a" not in tensors:
                continue
            present.add(e)
            for proj, name in PROJECTIONS.items():
                a = tensors[f"{key}.{proj}.lora_a"].float()
                if a.shape != getattr(ffn, f"{name}_a")[e].shape:
                    raise ValueError(f"{path}: rank {a.shape[0]}, the layers have {ffn.rank}")
                getattr(ffn, f"{name}_a")[e].copy_(a)
                getattr(ffn, f"{name}_b")[e].copy_(
                    tensors[f"{key}.{proj}.lora_b"].float() / ffn.scaling
                )
    return frozenset(range(ffns[0].num_experts)) - frozenset(present)
