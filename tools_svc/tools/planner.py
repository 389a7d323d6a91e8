"""`training_planner`: what a pre-training run costs, and whether a plan adds up.

The arithmetic is the standard estimate for dense and MoE transformers:
training takes about 6 FLOPs per active parameter per token (2 forward, 4
backward; Kaplan et al. 2020), the cluster delivers `gpus x peak x MFU`
FLOP/s, and everything else follows: wall-clock time, GPU-hours, cost,
steps and the token throughput. Claims a plan makes (a throughput, a
duration, a cost, a budget) are checked against that arithmetic and against
each other, and each mismatch beyond 25 % is reported in words.

The seed's plan (400B total / 50B active parameters, 500K steps of 4M
tokens, 512 H100s, "about 4,000 tokens/s", "about 60 days", "$8M") fails:
2T tokens at 4,000 tokens/s take about 16 years.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from common.errors import BadRequest
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["GPUS", "TrainingPlannerTool", "plan"]

TOLERANCE = 1.25
# bf16 mixed precision with Adam: bf16 weights and gradients, fp32 master weights
# and two fp32 moments: 2 + 2 + 4 + 4 + 4 bytes per parameter.
TRAINING_BYTES_PER_PARAM = 16
REALISTIC_MFU = 0.6
SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Gpu:
    peak_flops: float  # dense bf16 tensor-core FLOP/s
    memory_gb: float


GPUS: dict[str, Gpu] = {
    "H100": Gpu(989e12, 80),
    "H100-PCIe": Gpu(756e12, 80),
    "H200": Gpu(989e12, 141),
    "B200": Gpu(2250e12, 192),
    "A100": Gpu(312e12, 80),
    "A100-40GB": Gpu(312e12, 40),
    "L40S": Gpu(362e12, 48),
    "V100": Gpu(125e12, 32),
    "MI300X": Gpu(1307e12, 192),
}
GpuType = Literal[
    "H100", "H100-PCIe", "H200", "B200", "A100", "A100-40GB", "L40S", "V100", "MI300X"
]


class PlannerArguments(ToolArguments):
    # Bounds keep every figure finite and non-zero (no underflow to a zero duration).
    total_params: float = Field(ge=1, le=1e15, description="All parameters, e.g. 4e11 for 400B.")
    active_params: float | None = Field(
        None, ge=1, le=1e15, description="Parameters active per token (MoE); default: all of them."
    )
    tokens: float | None = Field(None, ge=1, le=1e18, description="Training tokens, e.g. 2e12.")
    steps: int | None = Field(None, gt=0, le=10**12, description="Optimizer steps.")
    batch_tokens: float | None = Field(
        None, ge=1, le=1e12, description="Tokens per step (batch size)."
    )
    gpu_type: GpuType = Field("H100", description="Accelerator; sets peak FLOP/s and memory.")
    gpu_count: int = Field(gt=0, le=10_000_000, description="Number of GPUs.")
    mfu: float = Field(0.4, ge=0.001, le=1, description="Model FLOPs utilisation, 0 to 1.")
    price_per_gpu_hour: float = Field(2.0, gt=0, le=1e6, description="US dollars per GPU-hour.")
    peak_tflops: float | None = Field(
        None, ge=0.001, le=1e9, description="Override the GPU's peak TFLOP/s."
    )
    claimed_tokens_per_s: float | None = Field(
        None, gt=0, le=1e18, description="A throughput to check."
    )
    claimed_days: float | None = Field(None, gt=0, le=1e9, description="A duration to check.")
    claimed_cost_usd: float | None = Field(None, gt=0, le=1e18, description="A cost to check.")
    budget_usd: float | None = Field(
        None, gt=0, le=1e18, description="A budget to check the cost against."
    )


def _num(value: float) -> str:
    """2e12 -> '2T', 3.85e5 -> '385.8K', 4000 -> '4,000'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(value) >= scale:
            return f"{value / scale:,.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:,.0f}"


def _flops(value: float) -> str:
    """6e23 -> '6.0e23 FLOPs'."""
    return f"{value:.1e}".replace("e+", "e") + " FLOPs"


def _duration(days: float) -> str:
    if days >= 2 * DAYS_PER_YEAR:
        return f"about {days / DAYS_PER_YEAR:,.0f} years ({days:,.0f} days)"
    if days >= 2:
        return f"about {days:,.1f} days"
    return f"about {days * 24:,.1f} hours"


def _off(actual: float, expected: float) -> bool:
    ratio = actual / expected
    return not 1 / TOLERANCE <= ratio <= TOLERANCE


def plan(args: PlannerArguments) -> dict[str, Any]:
    """Compute the run's figures and the list of inconsistencies in the plan."""
    active = args.active_params or args.total_params
    if active > args.total_params:
        raise BadRequest(
            "active_params cannot exceed total_params.",
            param="arguments.active_params",
            code="invalid_plan",
        )
    issues: list[str] = []
    tokens = args.tokens
    if args.steps and args.batch_tokens:
        from_steps = args.steps * args.batch_tokens
        if tokens is None:
            tokens = from_steps
        elif _off(tokens, from_steps):
            issues.append(
                f"{args.steps:,} steps of {_num(args.batch_tokens)} tokens are "
                f"{_num(from_steps)} tokens, not the {_num(tokens)} given."
            )
    if tokens is None:
        raise BadRequest(
            "Give tokens, or steps and batch_tokens.", param="arguments.tokens", code="invalid_plan"
        )
    gpu = GPUS[args.gpu_type]
    peak = args.peak_tflops * 1e12 if args.peak_tflops else gpu.peak_flops
    cluster = f"{args.gpu_count:,} {args.gpu_type}"

    flops = 6 * active * tokens
    cluster_flops = args.gpu_count * peak * args.mfu
    seconds = flops / cluster_flops
    days = seconds / SECONDS_PER_DAY
    gpu_hours = args.gpu_count * seconds / 3600
    cost = gpu_hours * args.price_per_gpu_hour
    tokens_per_s = tokens / seconds
    batch = args.batch_tokens
    steps = args.steps or (tokens / batch if batch else None)

    computed: dict[str, Any] = {
        "tokens": tokens,
        "active_params": active,
        "training_flops": flops,
        "cluster_flops_per_s": cluster_flops,
        "tokens_per_s": tokens_per_s,
        "wall_clock_days": days,
        "gpu_hours": gpu_hours,
        "cost_usd": cost,
        "steps": steps,
        "seconds_per_step": seconds / steps if steps else None,
    }

    if args.claimed_tokens_per_s:
        claimed_tps = args.claimed_tokens_per_s
        days_at_claim = tokens / claimed_tps / SECONDS_PER_DAY
        computed["days_at_claimed_tokens_per_s"] = days_at_claim
        if args.claimed_days and _off(days_at_claim, args.claimed_days):
            needed = tokens / (args.claimed_days * SECONDS_PER_DAY)
            issues.append(
                f"At the claimed {_num(claimed_tps)} tokens/s, {_num(tokens)} tokens take "
                f"{_duration(days_at_claim)}, not {args.claimed_days:g} days; "
                f"{args.claimed_days:g} days need about {_num(needed)} tokens/s "
                f"({needed / claimed_tps:,.0f}x more)."
            )
        if _off(claimed_tps, tokens_per_s):
            issues.append(
                f"{cluster} at {args.mfu:.0%} MFU process about {_num(tokens_per_s)} tokens/s "
                f"for {_num(active)} active parameters, not the claimed {_num(claimed_tps)} "
                f"(that would be an MFU of {args.mfu * claimed_tps / tokens_per_s:.2%})."
            )
    if args.claimed_days:
        needed_mfu = flops / (args.gpu_count * peak * args.claimed_days * SECONDS_PER_DAY)
        computed["mfu_needed_for_claimed_days"] = needed_mfu
        computed["tokens_per_s_needed_for_claimed_days"] = tokens / (
            args.claimed_days * SECONDS_PER_DAY
        )
        if needed_mfu > 1:
            issues.append(
                f"{args.claimed_days:g} days are impossible on {cluster}: they need an MFU of "
                f"{needed_mfu:.0%}."
            )
        elif _off(days, args.claimed_days):
            issues.append(
                f"{cluster} at {args.mfu:.0%} MFU need {_duration(days)} for "
                f"{_flops(flops)}, not {args.claimed_days:g} days "
                f"({args.claimed_days:g} days means an MFU of {needed_mfu:.0%})."
            )
    if args.claimed_cost_usd:
        claim_days = args.claimed_days or days
        implied = args.claimed_cost_usd / (args.gpu_count * claim_days * 24)
        computed["implied_price_per_gpu_hour"] = implied
        if _off(args.claimed_cost_usd, cost):
            issues.append(
                f"The claimed ${_num(args.claimed_cost_usd)} does not match about ${_num(cost)} "
                f"({gpu_hours:,.0f} GPU-hours at ${args.price_per_gpu_hour:,.2f}); for "
                f"{args.gpu_count:,} GPUs over {claim_days:,.0f} days it implies "
                f"${implied:,.2f} per GPU-hour."
            )
    if args.budget_usd and cost > args.budget_usd:
        budget = _num(args.budget_usd)
        issues.append(f"The run costs about ${_num(cost)}, over the ${budget} budget.")
    if args.mfu > REALISTIC_MFU:
        issues.append(
            f"An MFU of {args.mfu:.0%} is above what large runs achieve (typically 30-55%)."
        )
    memory_needed = args.total_params * TRAINING_BYTES_PER_PARAM
    memory_available = args.gpu_count * gpu.memory_gb * 1e9
    computed["training_state_bytes"] = memory_needed
    if memory_needed > memory_available:
        issues.append(
            f"Weights, gradients and Adam states of {_num(args.total_params)} parameters need "
            f"about {memory_needed / 1e12:,.1f} TB; {cluster} hold "
            f"{memory_available / 1e12:,.1f} TB."
        )
    return {
        "consistent": not issues,
        "issues": issues,
        "computed": computed,
        "assumptions": {
            "flops_per_token": f"6 x {_num(active)} active parameters",
            "gpu_peak_flops": peak,
            "mfu": args.mfu,
            "price_per_gpu_hour": args.price_per_gpu_hour,
            "training_bytes_per_param": TRAINING_BYTES_PER_PARAM,
        },
    }


class TrainingPlannerTool(Tool):
    name = "training_planner"
    description = (
        "Plan an LLM pre-training run: from total and active parameters, tokens (or steps x "
        "batch tokens), GPU type and count, MFU and price per GPU-hour, compute training FLOPs "
        "(6 x active params x tokens), wall-clock days, GPU-hours, cost, steps and tokens/s; "
        "check claimed throughput, duration, cost and budget, and list every inconsistency."
    )
    arguments = PlannerArguments

    async def run(self, arguments: Any) -> ToolResult:
        return ToolResult(plan(arguments))
