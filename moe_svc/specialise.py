"""`python -m moe_svc.specialise`: specialise the default model's experts (Branch-Train-MiX).

    # the committed artefact (about an hour on one CPU thread), resumable
    python -m moe_svc.specialise --preset full --threads 1 \
        --out moe_svc/artefacts/expert_specialisation.safetensors
    # only the programs step, on top of the committed artefact (25 minutes on 2 threads)
    python -m moe_svc.specialise --threads 2 --run-dir var/specialisation/programs \
        --from-artefact moe_svc/artefacts/expert_specialisation.safetensors \
        --out var/specialisation/candidate.safetensors
    # a CI smoke run on a tiny random model and byte tokens, seconds
    python -m moe_svc.specialise --preset smoke --init-config tiny-dense \
        --corpora DIR --run-dir DIR

Starting from the dense SmolLM2 (var/models/smollm2-135m-instruct, built by
`python -m moe_svc.build_default`), every layer's FFN gets eight low-rank expert
deltas and a router (`moe_svc.specialisation.lora`); the three steps of
`moe_svc.specialisation.steps` train them on the domain corpora of
`moe_svc.specialisation.corpora`, one expert per domain. A fourth step
(`moe_svc.specialisation.programs`) then teaches the maths and code experts to answer
word problems with programs, in the form the reasoning service's PAL strategy asks
for (problems from `moe_svc.specialisation.pal_data`). The result is written
in the artefact format that `moe_svc.build_default` applies, next to a JSON
record of the command, seed, token counts and timings. Rerunning with the same
--run-dir resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from moe_svc.chat_template import DEFAULT_TEMPLATE, ChatTemplate
from moe_svc.modeling import PRESETS, CausalLM, load_pretrained
from moe_svc.specialisation.corpora import build_corpora, domain_tokens
from moe_svc.specialisation.domains import DOMAINS, EXPERT_OF
from moe_svc.specialisation.lora import (
    LoRAExpertFFN,
    export_artefact,
    install_experts,
    load_artefact,
)
from moe_svc.specialisation.pal_data import generate
from moe_svc.specialisation.programs import ProgramExample, load_examples, programs
from moe_svc.specialisation.steps import DomainData, branch, finetune, mix
from moe_svc.training.data import TokenData, Tokenizer, load_tokenizer

__all__ = ["PRESETS_RUN", "build_parser", "expert_divergence", "main"]

DEFAULT_DENSE_DIR = Path("var/models/smollm2-135m-instruct")

# Run presets: `full` fits about an hour on one CPU thread (measured ~58 tokens/s for a
# forward+backward of SmolLM2-135M); `smoke` is for a tiny random model in tests.
PRESETS_RUN: dict[str, dict[str, Any]] = {
    "full": {
        "rank": 8,
        "alpha": 16.0,
        "seq_len": 128,
        "batch_size": 4,
        "branch_steps": 48,
        "branch_lr": 2e-3,
        "branch_warmup": 3,
        "mix_tokens": 2048,
        "router_temperature": 1.0,
        "finetune_steps": 40,
        "finetune_batch_size": 8,
        "finetune_warmup": 3,
        "router_lr_frac": 0.02,
        "aux_loss_coef": 0.01,
        "z_loss_coef": 0.001,
        "eval_batches": 4,
        "save_every": 4,
        "programs_count": 2000,
        "programs_held_out": 32,
        "programs_max_tokens": 384,
        "programs_steps": 64,
        "programs_batch": 8,
        "programs_lr": 1e-3,
        "programs_warmup": 4,
        "programs_replay": 2,
    },
    "smoke": {
        "rank": 4,
        "alpha": 8.0,
        "seq_len": 32,
        "batch_size": 4,
        "branch_steps": 12,
        "branch_lr": 1e-2,
        "branch_warmup": 2,
        "mix_tokens": 256,
        "router_temperature": 1.0,
        "finetune_steps": 6,
        "finetune_batch_size": 8,
        "finetune_warmup": 1,
        "router_lr_frac": 0.02,
        "aux_loss_coef": 0.01,
        "z_loss_coef": 0.001,
        "eval_batches": 2,
        "save_every": 4,
        "programs_count": 64,
        "programs_held_out": 8,
        "programs_max_tokens": 1400,  # byte tokens: the PAL prompt alone is ~900
        "programs_steps": 20,
        "programs_batch": 4,
        "programs_lr": 3e-2,
        "programs_warmup": 1,
        "programs_replay": 1,
    },
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m moe_svc.specialise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS_RUN), default="full")
    p.add_argument("--dense-dir", type=Path, default=DEFAULT_DENSE_DIR, help="dense HF model")
    p.add_argument("--init-config", choices=sorted(PRESETS), help="random dense model (tests)")
    p.add_argument("--corpora", type=Path, default=Path("var/specialisation/corpora"))
    p.add_argument("--run-dir", type=Path, default=Path("var/specialisation/run"))
    p.add_argument("--out", type=Path, help="artefact path (default: RUN_DIR/expert_...)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--autocast", choices=["none", "bf16"], default="none")
    p.add_argument(
        "--from-artefact",
        type=Path,
        help="start from this artefact's experts and routers: only the programs step runs",
    )
    p.add_argument(
        "--programs-data",
        type=Path,
        default=Path("var/specialisation/programs.jsonl"),
        help="where the pal_data problems trained on are written (JSON lines)",
    )
    p.add_argument("--finetune-deltas", action="store_true", help="also train deltas when mixing")
    p.add_argument(
        "--dense-experts",
        nargs="*",
        choices=DOMAINS,
        default=[],
        help="domains whose expert is exported without its delta (the dense FFN), e.g. "
        "when its training text hurts chat answers",
    )
    for key, value in PRESETS_RUN["full"].items():
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, type=type(value), default=None, help=f"(preset value; full: {value})")
    return p


def load_domain_data(
    corpora: Path, tokenizer: Tokenizer, seq_len: int, eos: int | None
) -> dict[str, DomainData]:
    data = {}
    for domain in DOMAINS:
        train = TokenData(domain_tokens(corpora / domain / "train.txt", tokenizer, eos), seq_len, 0)
        train.val = torch.from_numpy(domain_tokens(corpora / domain / "val.txt", tokenizer, eos))
        data[domain] = DomainData(train, stats={"train": len(train.train), "val": len(train.val)})
    return data


@torch.no_grad()
def expert_divergence(ffns: list[LoRAExpertFFN]) -> dict[str, Any]:
    """Each expert's delta norm relative to the dense FFN's, and the deltas' pairwise cosine.

    Accumulated projection by projection in fp64: the flattened deltas of all layers
    are tens of millions of numbers each, too many to stack at once.
    """
    E = ffns[0].num_experts
    gram = torch.zeros(E, E, dtype=torch.float64)
    base_sq = 0.0
    for ffn in ffns:
        for proj, weight in (
            ("w1", ffn.base.gate_proj.weight),
            ("w2", ffn.base.down_proj.weight),
            ("w3", ffn.base.up_proj.weight),
        ):
            deltas = torch.stack([ffn.delta(e, proj).reshape(-1) for e in range(E)]).double()
            gram += deltas @ deltas.t()
            base_sq += float(weight.double().square().sum())
    norms = gram.diagonal().sqrt().clamp_min(1e-12)
    cosine = gram / (norms[:, None] * norms[None, :])
    return {
        "relative_delta_norm": [round(float(n) / base_sq**0.5, 5) for n in norms],
        "pairwise_cosine": [[round(c, 3) for c in row] for row in cosine.tolist()],
    }


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    for key, value in PRESETS_RUN[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = args.run_dir / "expert_specialisation.safetensors"
    return args


def _program_examples(
    args: argparse.Namespace, tokenizer: Tokenizer
) -> tuple[list[ProgramExample], list[ProgramExample]]:
    """(training, held-out) PAL examples; the problems file is generated when short."""
    wanted = args.programs_count + args.programs_held_out
    path: Path = args.programs_data
    # written afresh each run (deterministic, under a second): a file from an older
    # generator is never trained on
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(asdict(p)) for p in generate(wanted, args.seed)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.init_config:
        template, end_of_turn = ChatTemplate(DEFAULT_TEMPLATE), "<|im_end|>"
    else:
        template = ChatTemplate.from_model_dir(args.dense_dir)
        config = json.loads((args.dense_dir / "tokenizer_config.json").read_text())
        end_of_turn = config["eos_token"]
    examples = load_examples(
        path, tokenizer, template, end_of_turn, wanted, args.programs_max_tokens
    )
    held = min(args.programs_held_out, len(examples) // 2)
    return examples[: len(examples) - held], examples[len(examples) - held :]


def _base_model(args: argparse.Namespace) -> tuple[CausalLM, Tokenizer]:
    if args.init_config:
        # a random dense model, saved on first use so that a resumed run keeps it
        path = args.run_dir / "random_base.pt"
        model = CausalLM(PRESETS[args.init_config])
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            torch.save(model.state_dict(), path)
        return model, load_tokenizer("bytes", None)
    if not (args.dense_dir / "config.json").exists():
        raise SystemExit(f"{args.dense_dir}: run `python -m moe_svc.build_default` first")
    return load_pretrained(args.dense_dir), load_tokenizer("auto", args.dense_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run all three steps; returns the run record (also written next to the artefact)."""
    args = _resolve(build_parser().parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if not (args.corpora / "manifest.json").exists():
        build_corpora(args.corpora)
    model, tokenizer = _base_model(args)
    model.train()
    eos = model.config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    ffns = install_experts(model, len(DOMAINS), args.rank, args.alpha, 2, args.seed)
    data = load_domain_data(args.corpora, tokenizer, args.seq_len, eos)

    def amp() -> AbstractContextManager[Any]:
        if args.autocast == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    record: dict[str, Any] = {
        "command": " ".join(
            ["python -m moe_svc.specialise", *(argv if argv is not None else sys.argv[1:])]
        ),
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k in PRESETS_RUN["full"]},
        "corpus_tokens": {d: data[d].stats for d in DOMAINS},
    }
    if args.from_artefact:
        earlier = args.from_artefact.with_suffix(".json")
        if earlier.exists():
            record["earlier"] = json.loads(earlier.read_text())
        dense = load_artefact(ffns, args.from_artefact)
    else:
        record["branch"] = branch(model, ffns, data, args, args.run_dir, amp)
        record["mix"] = mix(model, ffns, data, args, args.run_dir, amp)
        record["finetune"] = finetune(model, ffns, data, args, args.run_dir, amp)
        dense = frozenset(EXPERT_OF[d] for d in args.dense_experts)
    if args.programs_steps > 0:
        examples, held_out = _program_examples(args, tokenizer)
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else eos or 0
        record["programs"] = programs(
            model, ffns, examples, held_out, data, args, args.run_dir, amp, pad
        )
    record["divergence"] = expert_divergence(ffns)
    record["wall_seconds_this_invocation"] = round(time.perf_counter() - started, 1)
    record["dense_experts"] = sorted(DOMAINS[e] for e in dense)
    tensors = export_artefact(
        ffns, args.out, {"seed": str(args.seed), "preset": args.preset}, dense_experts=dense
    )
    record["artefact"] = {
        "path": str(args.out),
        "bytes": args.out.stat().st_size,
        "tensors": len(tensors),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out} ({record['artefact']['bytes']:,} bytes)")
    return record


if __name__ == "__main__":
    main()
