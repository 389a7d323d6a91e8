"""Train or fine-tune the Llama / Mixtral model: `python -m moe_svc.train`.

    # a tiny MoE from scratch on byte tokens, in seconds on a CPU
    python -m moe_svc.train --init-config tiny --tokenizer bytes --data notes.txt \
        --out var/runs/tiny --steps 200
    # fine-tune only the routers of a Hugging Face model directory, resumable
    python -m moe_svc.train --model-dir var/models/moe --data corpus/*.txt \
        --train-only routers --out var/runs/routers --resume

AdamW with linear warmup and cosine decay, gradient clipping, the load-balancing
and z-loss router terms, evaluation perplexity and a per-layer expert-load report
at every evaluation. `--out` receives `checkpoint.pt` (model, optimizer, step, data
sampler state: `--resume` continues from it exactly) and, at the end, `model/`, a
Hugging Face directory that `load_pretrained` and transformers both load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from moe_svc.modeling import PRESETS, CausalLM, load_pretrained, save_pretrained
from moe_svc.modeling.config import ModelConfig
from moe_svc.training.data import TokenData, load_tokenizer, read_tokens

__all__ = ["build_parser", "lr_at", "main"]

# copied from --model-dir into the saved model, so that it serves with the same chat template
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m moe_svc.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--model-dir", type=Path, help="Hugging Face model directory to start from")
    start.add_argument("--init-config", choices=sorted(PRESETS), help="random init from a preset")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="text, .npy or .bin files")
    p.add_argument("--val-data", type=Path, nargs="*", help="validation files (default: split)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="tail of --data held out")
    p.add_argument("--tokenizer", default="auto", help="auto | bytes | path/to/tokenizer.json")
    p.add_argument("--token-dtype", default="uint16", help="dtype of .bin token files")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps (schedule)")
    p.add_argument("--stop-at", type=int, help="stop after this step (time-boxed sessions)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--min-lr", type=float, default=None, help="cosine floor (default lr/10)")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm; 0 disables")
    p.add_argument("--aux-loss-coef", type=float, help="load-balancing loss weight (config)")
    p.add_argument("--z-loss-coef", type=float, help="router z-loss weight (config)")
    p.add_argument("--train-only", choices=["all", "routers", "experts"], default="all")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--device", default="auto", help="auto (cuda if present) | cpu | cuda")
    p.add_argument(
        "--autocast", choices=["none", "bf16"], default=None, help="default: bf16 on cuda"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs only)")
    return p


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warmup to --lr, then cosine decay to --min-lr at --steps."""
    lr = float(args.lr)
    min_lr = lr / 10 if args.min_lr is None else float(args.min_lr)
    if step < args.warmup_steps:
        return lr * (step + 1) / int(args.warmup_steps)
    warmup, total = int(args.warmup_steps), int(args.steps)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def select_trainable(model: CausalLM, which: str) -> list[torch.nn.Parameter]:
    """Freeze all but the routers or the experts when asked; return the trainable parameters."""
    if which != "all" and not model.config.is_moe:
        raise SystemExit(f"--train-only {which} needs an MoE model (model_type mixtral)")
    marker = {"all": "", "routers": ".mlp.gate.", "experts": ".mlp.experts."}[which]
    for name, param in model.named_parameters():
        param.requires_grad_(marker in name + ".")
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params: list[torch.nn.Parameter], args: argparse.Namespace) -> torch.optim.AdamW:
    # nanoGPT: decay matrices, not norms/biases (vectors)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def compute_loss(
    model: CausalLM, x: torch.Tensor, y: torch.Tensor, aux_coef: float, z_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss with router terms, cross-entropy alone)."""
    out = model(x, output_router_logits=True)
    ce = F.cross_entropy(out.logits.float().reshape(-1, out.logits.shape[-1]), y.reshape(-1))
    return ce + aux_coef * out.aux_loss + z_coef * out.z_loss, ce


@torch.no_grad()
def evaluate(
    model: CausalLM,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: Any,
) -> dict[str, Any]:
    """Mean validation cross-entropy, perplexity and the expert load seen meanwhile."""
    model.eval()
    stats = model.new_expert_stats() if model.config.is_moe else None
    total, count = 0.0, 0
    with amp:
        for x, y in batches:
            logits = model(x.to(device))
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1)
            )
            total += loss.item() * y.numel()
            count += y.numel()
    model.expert_stats = None
    model.train()
    mean = total / max(1, count)
    result: dict[str, Any] = {"loss": mean, "ppl": math.exp(min(mean, 50.0))}
    if stats is not None:
        result["expert_load"] = stats.load_fractions()
        result["expert_table"] = stats.format_table()
    return result


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a torn checkpoint


def build_model(args: argparse.Namespace, resume: dict[str, Any] | None) -> CausalLM:
    if resume is not None:
        model = CausalLM(ModelConfig.from_hf_dict(resume["config"]))
        model.load_state_dict(resume["model"])
        return model
    if args.model_dir is not None:
        return load_pretrained(args.model_dir)
    return CausalLM(PRESETS[args.init_config])


def build_data(args: argparse.Namespace, config: ModelConfig) -> TokenData:
    tokenizer = load_tokenizer(args.tokenizer, args.model_dir)
    eos = config.eos_token_id if isinstance(config.eos_token_id, int) else None
    tokens = read_tokens(args.data, tokenizer, args.token_dtype, eos)
    if args.val_data:
        data = TokenData(tokens, args.seq_len, 0.0)
        data.val = torch.from_numpy(read_tokens(args.val_data, tokenizer, args.token_dtype, eos))
    else:
        data = TokenData(tokens, args.seq_len, args.val_fraction)
    if data.max_token() >= config.vocab_size:
        raise SystemExit(f"token id {data.max_token()} >= vocab_size {config.vocab_size}")
    return data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the CLI; returns the step reached and the train/eval history (for tests)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    autocast = args.autocast or ("bf16" if device.type == "cuda" else "none")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if autocast == "bf16" else nullcontext()
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"
    resume = None
    if args.resume and ckpt_path.exists():
        resume = torch.load(ckpt_path, weights_only=False)

    model = build_model(args, resume).to(device).train()
    config = model.config
    aux_coef = config.router_aux_loss_coef if args.aux_loss_coef is None else args.aux_loss_coef
    z_coef = config.router_z_loss_coef if args.z_loss_coef is None else args.z_loss_coef
    data = build_data(args, config)
    val_batches = data.val_batches(args.batch_size, args.eval_batches)

    # ---- optimizer and state ----
    params = select_trainable(model, args.train_only)
    optimizer = make_optimizer(params, args)
    generator = torch.Generator().manual_seed(args.seed)
    step = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        step = resume["step"]
    n_params = sum(p.numel() for p in params)
    tqdm.write(
        f"{config.model_type}: {model.num_parameters():,} parameters, {n_params:,} trained; "
        f"{len(data.train):,} training tokens; starting at step {step}"
    )

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "generator": generator.get_state(),
                "config": config.to_hf_dict(),
                "args": vars(args),
            },
        )

    history: dict[str, Any] = {"train": [], "eval": []}
    log = (args.out / "log.jsonl").open("a")

    def run_eval() -> None:
        if not val_batches:
            return
        result = evaluate(model, val_batches, device, amp)
        table = result.pop("expert_table", None)
        tqdm.write(f"step {step}: val loss {result['loss']:.4f}, ppl {result['ppl']:.2f}")
        if table:
            tqdm.write("expert load (share of routed tokens):\n" + table)
        history["eval"].append({"step": step, **result})
        log.write(json.dumps({"step": step, "eval": result}) + "\n")
        log.flush()

    stop = args.steps if args.stop_at is None else min(args.stop_at, args.steps)
    bar = tqdm(total=stop, initial=step, desc="train", disable=args.no_progress, dynamic_ncols=True)
    while step < stop:
        lr = lr_at(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ce_sum = 0.0
        for _ in range(args.grad_accum):
            x, y = data.train_batch(args.batch_size, generator)
            with amp:
                loss, ce = compute_loss(model, x.to(device), y.to(device), aux_coef, z_coef)
            (loss / args.grad_accum).backward()
            ce_sum += ce.item() / args.grad_accum
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history["train"].append({"step": step, "loss": ce_sum, "lr": lr})
        log.write(json.dumps({"step": step, "loss": ce_sum, "lr": lr}) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{ce_sum:.3f}", lr=f"{lr:.2e}")
        if step % args.eval_every == 0 or step == stop:
            run_eval()
        if step % args.save_every == 0 or step == stop:
            checkpoint()
    bar.close()
    log.close()
    if step >= args.steps:
        final = args.out / "model"
        save_pretrained(model.cpu(), final)
        for name in TOKENIZER_FILES if args.model_dir else ():
            if (args.model_dir / name).exists():
                shutil.copy(args.model_dir / name, final / name)
        tqdm.write(f"saved {final}")
    return {"step": step, **history}


if __name__ == "__main__":
    main()
