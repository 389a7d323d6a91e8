"""Time our sparse MoE block against transformers' MixtralSparseMoeBlock on identical weights.

    .venv/bin/python -m bench.moe_layer            # full table (a few minutes on 2 cores)
    .venv/bin/python -m bench.moe_layer --quick    # short run

References, both from the installed transformers, in the same run:
- `hf eager`: `MixtralSparseMoeBlock` built from a `MixtralConfig`, as a standalone
  module runs it (its per-expert mask loop);
- `hf grouped`: the same block with `experts_implementation="grouped_mm"`, which
  `from_pretrained` selects by default in transformers 5.

Ours runs with fp32 weights and with bf16 weights (bf16 activations too). Ratios
are reference time / our time, so > 1 means we are faster. Decoding sizes (1-8
tokens) are overhead-bound; prefill sizes (512, 2048 tokens) are matmul-bound.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import MixtralConfig
from transformers import logging as hf_logging
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

from moe_svc.modeling import ModelConfig, SparseMoeBlock


@dataclass(frozen=True)
class Size:
    name: str
    hidden_size: int
    intermediate_size: int
    num_experts: int = 8
    top_k: int = 2


SIZES = [Size("smollm2-like", 576, 192), Size("larger", 1024, 1024)]
DECODE_TOKENS = [1, 2, 4, 8]
PREFILL_TOKENS = [512, 2048]


def build_blocks(
    size: Size, seed: int = 0
) -> tuple[MixtralSparseMoeBlock, MixtralSparseMoeBlock, SparseMoeBlock, SparseMoeBlock]:
    """transformers eager and grouped_mm blocks, ours in fp32 and bf16: one set of weights."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "hidden_size": size.hidden_size,
        "intermediate_size": size.intermediate_size,
        "num_local_experts": size.num_experts,
        "num_experts_per_tok": size.top_k,
    }
    # transformers is untyped; Any keeps strict mypy quiet about calling into it
    hf_block: Any = MixtralSparseMoeBlock
    hf_config: Any = MixtralConfig
    eager = hf_block(hf_config(**kwargs, experts_implementation="eager"))
    grouped = hf_block(hf_config(**kwargs, experts_implementation="grouped_mm"))
    torch.nn.init.normal_(eager.gate.weight, std=size.hidden_size**-0.5)
    torch.nn.init.normal_(eager.experts.gate_up_proj, std=size.hidden_size**-0.5)
    torch.nn.init.normal_(eager.experts.down_proj, std=size.intermediate_size**-0.5)
    grouped.load_state_dict(eager.state_dict())
    ours = SparseMoeBlock(_our_config(size))
    ours.load_state_dict(eager.state_dict())  # same parameter names and shapes
    ours_bf16 = SparseMoeBlock(_our_config(size))
    ours_bf16.load_state_dict(eager.state_dict())
    return eager.eval(), grouped.eval(), ours.eval(), ours_bf16.to(torch.bfloat16).eval()


def _our_config(size: Size) -> ModelConfig:
    return ModelConfig(
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_attention_heads=1,
        num_key_value_heads=1,
        num_local_experts=size.num_experts,
        num_experts_per_tok=size.top_k,
    )


def time_interleaved(
    blocks: dict[str, tuple[Callable[[torch.Tensor], object], torch.Tensor]],
    repeats: int,
    warmup: int,
) -> dict[str, float]:
    """Median wall time of each block(x) in milliseconds.

    The blocks take turns within every repeat, so that load from other processes
    on the machine falls on all of them alike instead of on whichever ran then.
    """
    for block, x in blocks.values():
        for _ in range(warmup):
            block(x)
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, (block, x) in blocks.items():
            start = time.perf_counter()
            block(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, nargs="+", help="token counts to run (default: all)")
    parser.add_argument("--size", choices=[s.name for s in SIZES], help="one size only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_verbosity: Any = hf_logging.set_verbosity_error
    set_verbosity()
    sizes = SIZES[:1] if args.quick else SIZES
    if args.size:
        sizes = [s for s in SIZES if s.name == args.size]
    token_counts = [1, 8, 512] if args.quick else DECODE_TOKENS + PREFILL_TOKENS
    if args.tokens:
        token_counts = args.tokens

    header = (
        f"{'size':<13} {'tokens':>6} {'hf eager':>9} {'hf grouped':>10} {'ours fp32':>9} "
        f"{'ours bf16':>9} {'eager/fp32':>10} {'eager/bf16':>10} "
        f"{'best hf/fp32':>12} {'best hf/bf16':>12}"
    )
    print(f"torch {torch.__version__}, {args.threads} threads, times in ms (median)")
    print(header)
    print("-" * len(header))
    for size in sizes:
        eager, grouped, ours, ours_bf16 = build_blocks(size)
        for tokens in token_counts:
            x = torch.randn(1, tokens, size.hidden_size)
            x_bf16 = x.bfloat16()
            with torch.inference_mode():
                expected = eager(x)
                torch.testing.assert_close(ours(x)[0], expected, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(grouped(x), expected, atol=1e-4, rtol=1e-4)
                prefill = tokens >= 256
                repeats = (5 if prefill else 50) if args.quick else (15 if prefill else 300)
                ms = time_interleaved(
                    {
                        "eager": (eager, x),
                        "grouped": (grouped, x),
                        "ours": (ours, x),
                        "bf16": (ours_bf16, x_bf16),
                    },
                    repeats,
                    warmup=2 if prefill else 20,
                )
            t_eager, t_grouped, t_ours, t_bf16 = ms["eager"], ms["grouped"], ms["ours"], ms["bf16"]
            best = min(t_eager, t_grouped)
            print(
                f"{size.name:<13} {tokens:>6} {t_eager:>9.3f} {t_grouped:>10.3f} {t_ours:>9.3f} "
                f"{t_bf16:>9.3f} {t_eager / t_ours:>9.2f}x {t_eager / t_bf16:>9.2f}x "
                f"{best / t_ours:>11.2f}x {best / t_bf16:>11.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
