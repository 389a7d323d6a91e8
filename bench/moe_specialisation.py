"""Expert specialisation of the default model: perplexity per domain and routing.

    .venv/bin/python -m bench.moe_specialisation              # ~10 minutes on 1 thread
    .venv/bin/python -m bench.moe_specialisation --windows 2  # quicker, noisier

Held-out text: the `val` split of each domain corpus (moe_svc.specialisation.corpora),
the same number of windows per domain. In one run it scores

- the dense SmolLM2 (the reference), and, from the same hidden states, the routing of
  the untrained upcycled model (its random routers: it computes what the dense model
  computes, so its routing shows what "no specialisation" looks like);
- the specialised MoE built by `moe_svc.build_default` with the artefact applied
  (into --models, not var/models, which running services use).

Prints per-domain perplexity (dense, specialised, ratio), the share of each
domain's top-2 assignments per expert (mean over layers), I(domain; top-1 expert)
for both models, and the specialised model's greedy answers to the fixed quality
prompts of bench/moe_quality.py. Markdown, for the README.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F

from bench.moe_quality import PROMPTS, greedy_engine_answers, load_template
from moe_svc.build_default import ARTEFACT, DENSE_NAME, build
from moe_svc.modeling import CausalLM, load_pretrained
from moe_svc.modeling.layers import MLP
from moe_svc.specialisation.analysis import RoutingCounts, upcycled_routers
from moe_svc.specialisation.corpora import build_corpora, domain_tokens
from moe_svc.specialisation.domains import DOMAINS
from moe_svc.training.data import HFTokenizer


def windows(tokens: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """`count` evenly spaced windows of length + 1 tokens (input and next-token target)."""
    span = len(tokens) - length - 1
    starts = torch.linspace(0, span, count).long()
    return torch.stack([tokens[s : s + length + 1] for s in starts])


@torch.inference_mode()
def held_out_batches(
    corpora: Path, model_dir: Path, count: int, length: int
) -> dict[str, torch.Tensor]:
    """Each domain's held-out windows (its `val` split), tokenised as `model_dir` does."""
    tokenizer = HFTokenizer(model_dir / "tokenizer.json")
    eos = json.loads((model_dir / "config.json").read_text())["eos_token_id"]
    return {
        d: windows(
            torch.from_numpy(domain_tokens(corpora / d / "val.txt", tokenizer, eos)), count, length
        )
        for d in DOMAINS
        if (corpora / d / "val.txt").exists()
    }


def score(
    model: CausalLM,
    batches: dict[str, torch.Tensor],
    routing: RoutingCounts,
    router_of: Callable[[int, torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """Mean cross-entropy per domain; fills `routing` through forward hooks."""
    captured: list[torch.Tensor] = []
    hooks = []
    for layer in model.model.layers:
        if isinstance(layer.mlp, MLP):  # dense: route the FFN input with the upcycled routers
            hooks.append(
                layer.mlp.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            )
        else:  # MoE: the block returns (out, router_logits, selected_experts)
            block = cast(torch.nn.Module, layer.mlp)
            hooks.append(block.register_forward_hook(lambda _m, _a, out: captured.append(out[1])))
    losses = {}
    try:
        for d, (domain, batch) in enumerate(batches.items()):
            total = 0.0
            for row in batch:
                captured.clear()
                x, y = row[None, :-1], row[1:]
                logits = model(x)
                total += F.cross_entropy(logits[0].float(), y).item()
                for layer_idx, tensor in enumerate(captured):
                    routing.add(layer_idx, d, router_of(layer_idx, tensor), 2)
            losses[domain] = total / len(batch)
            print(f"  {domain}: loss {losses[domain]:.4f}", flush=True)
    finally:
        for hook in hooks:
            hook.remove()
    return losses


def routing_table(routing: RoutingCounts) -> str:
    shares = routing.shares()
    lines = ["| domain | " + " | ".join(f"e{e}" for e in range(shares.shape[1])) + " | top |"]
    lines.append("|---" * (shares.shape[1] + 2) + "|")
    for d, domain in enumerate(DOMAINS):
        row = shares[d].tolist()
        best = max(range(len(row)), key=row.__getitem__)
        cells = [f"**{100 * v:.1f}**" if e == best else f"{100 * v:.1f}" for e, v in enumerate(row)]
        lines.append(f"| {domain} | " + " | ".join(cells) + f" | e{best} |")
    return "\n".join(lines)


def greedy_answers(moe_dir: Path) -> list[str]:
    from moe_svc.loader import TextTokenizer, load_model

    loaded = load_model(moe_dir, "float32")
    tokenizer = TextTokenizer(moe_dir / "tokenizer.json")
    render = load_template(moe_dir)
    prompts = [tokenizer.encode(render([{"role": "user", "content": p}])) for p in PROMPTS]
    return [tokenizer.decode(a) for a in greedy_engine_answers(loaded, prompts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=Path("var/specialisation/models"))
    parser.add_argument("--corpora", type=Path, default=Path("var/specialisation/corpora"))
    parser.add_argument("--windows", type=int, default=8, help="held-out windows per domain")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--artefact", type=Path, default=ARTEFACT, help="deltas to apply")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.artefact.exists():
        raise SystemExit(f"{args.artefact} is missing: run `python -m moe_svc.specialise` first")
    if not (args.corpora / "manifest.json").exists():
        build_corpora(args.corpora)
    moe_dir = build(args.models, artefact=args.artefact)
    dense_dir = args.models / DENSE_NAME
    batches = held_out_batches(args.corpora, dense_dir, args.windows, args.window)
    started = time.perf_counter()
    dense = load_pretrained(dense_dir)
    c = dense.config
    routers = upcycled_routers(c.num_hidden_layers, len(DOMAINS), c.hidden_size)
    baseline = RoutingCounts(c.num_hidden_layers, len(DOMAINS), len(DOMAINS))
    print("dense model (and the untrained upcycled routing):", flush=True)
    dense_loss = score(
        dense, batches, baseline, lambda i, h: h.reshape(-1, h.shape[-1]).float() @ routers[i].t()
    )
    del dense
    moe = load_pretrained(moe_dir)
    specialised = RoutingCounts(c.num_hidden_layers, len(DOMAINS), len(DOMAINS))
    print("specialised MoE:", flush=True)
    moe_loss = score(moe, batches, specialised, lambda _i, logits: logits)
    del moe
    scored = time.perf_counter() - started
    answers = greedy_answers(moe_dir)

    tokens = args.windows * args.window
    print(
        f"\n## Expert specialisation ({tokens} held-out tokens per domain, windows of "
        f"{args.window}; scored in {scored:.0f} s)\n"
    )
    print("| domain | dense ppl | specialised MoE ppl | ratio |")
    print("|---|---|---|---|")
    for domain in DOMAINS:
        a, b = math.exp(dense_loss[domain]), math.exp(moe_loss[domain])
        print(f"| {domain} | {a:.2f} | {b:.2f} | {b / a:.3f} |")
    overall_dense = math.exp(sum(dense_loss.values()) / len(DOMAINS))
    overall_moe = math.exp(sum(moe_loss.values()) / len(DOMAINS))
    print(
        f"| **overall** | **{overall_dense:.2f}** | **{overall_moe:.2f}** | "
        f"**{overall_moe / overall_dense:.3f}** |"
    )
    print("\n### Share of each domain's top-2 assignments per expert (%, mean over layers)\n")
    print("Specialised MoE (expert i was branched on domain i):\n")
    print(routing_table(specialised))
    print("\nUntrained upcycled model (random routers):\n")
    print(routing_table(baseline))
    mi_s, mi_b = specialised.mutual_information(), baseline.mutual_information()
    favourites = specialised.favourite_experts()
    print(
        f"\nI(domain; top-1 expert), mean over layers: specialised **{mi_s:.3f} bits**, "
        f"untrained upcycled {mi_b:.3f} bits (upper bound log2(8) = 3 bits). "
        f"Distinct favourite experts across the 8 domains: {len(set(favourites))} "
        f"({favourites}); domains whose favourite is their own expert: "
        f"{sum(f == d for d, f in enumerate(favourites))}."
    )
    per_layer = specialised.mutual_information_per_layer()
    print("Per-layer MI (specialised): " + ", ".join(f"{v:.2f}" for v in per_layer))
    print("\n### Specialised model, greedy answers (fixed quality prompts)\n")
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        print(f"- **{prompt}** {answer!r}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dense_loss": dense_loss,
                    "moe_loss": moe_loss,
                    "overall_ppl": {"dense": overall_dense, "moe": overall_moe},
                    "mi_bits": {"specialised": mi_s, "upcycled": mi_b},
                    "mi_per_layer": per_layer,
                    "shares": specialised.shares().tolist(),
                    "baseline_shares": baseline.shares().tolist(),
                    "favourites": favourites,
                    "answers": dict(zip(PROMPTS, answers, strict=True)),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
