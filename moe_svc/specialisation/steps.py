"""Branch-Train-MiX's three steps on `LoRAExpertFFN` layers, each resumable.

- branch: for each domain, its expert's deltas train on that domain's text with every
  layer running only that expert (a dense path: the expert sees all domain tokens);
- mix: each layer's router row e is the mean FFN input of domain e's tokens minus the
  mean over domains, scaled so the logits have unit spread;
- fine-tune: mixed-domain batches, top-k routing, LM loss + load balancing + z-loss,
  training the routers (and, optionally, the deltas).

State lives in the run directory: `branch_<domain>.pt` (finished domains),
`branch_partial.pt`, `mix.pt`, `finetune.pt`; a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from moe_svc.modeling import CausalLM
from moe_svc.modeling.losses import load_balancing_loss, router_z_loss
from moe_svc.specialisation.domains import DOMAINS
from moe_svc.specialisation.lora import (
    LoRAExpertFFN,
    load_trainable_state,
    set_mode,
    trainable_state,
)
from moe_svc.train import lr_at, make_optimizer, save_checkpoint
from moe_svc.training.data import TokenData

__all__ = ["DomainData", "branch", "evaluate_lm", "finetune", "mix"]


@dataclass
class DomainData:
    train: TokenData  # train windows; .val holds the held-out tokens
    tokens_seen: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def _ce(model: CausalLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate_lm(
    model: CausalLM,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    amp: AbstractContextManager[Any],
) -> float:
    """Mean held-out cross-entropy over fixed windows."""
    model.eval()
    total, count = 0.0, 0
    with amp:
        for x, y in batches:
            total += _ce(model, x, y).item() * y.numel()
            count += y.numel()
    model.train()
    return total / max(1, count)


def _save_progress(
    path: Path,
    ffns: list[LoRAExpertFFN],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    started: float,
    record: dict[str, Any],
    **extra: Any,
) -> None:
    """A resumable checkpoint of a training step (branch or fine-tune); see `_resume`."""
    save_checkpoint(
        path,
        {
            **extra,
            "state": trainable_state(ffns),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "elapsed": time.perf_counter() - started,
            "record": record,
        },
    )


def _resume(
    saved: dict[str, Any],
    ffns: list[LoRAExpertFFN],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[int, float, dict[str, Any]]:
    """Restore what `_save_progress` wrote; (step, elapsed seconds, record)."""
    load_trainable_state(ffns, saved["state"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    return saved["step"], saved["elapsed"], saved["record"]


def start_or_resume(
    path: Path,
    ffns: list[LoRAExpertFFN],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    record: dict[str, Any],
) -> tuple[int, float, dict[str, Any]]:
    """(step, elapsed seconds, record): from the checkpoint at `path`, or a fresh start."""
    if path.exists():
        return _resume(torch.load(path, weights_only=False), ffns, optimizer, generator)
    return 0, 0.0, record


def router_losses(ffns: list[LoRAExpertFFN]) -> tuple[torch.Tensor, torch.Tensor]:
    """(load balancing, z) losses of the routers' last routed forward."""
    logits = [f.last_router_logits for f in ffns if f.last_router_logits is not None]
    return load_balancing_loss(logits, ffns[0].num_experts, ffns[0].top_k), router_z_loss(logits)


def scaled_router_lr(ffns: list[LoRAExpertFFN], fraction: float) -> float:
    """Routers are scaled to unit logit spread; their step size follows that scale."""
    router_norm = torch.stack([f.router.norm(dim=-1).mean() for f in ffns]).mean().item()
    return fraction * router_norm / math.sqrt(ffns[0].router.shape[1])


def _schedule(lr: float, steps: int, warmup: int) -> argparse.Namespace:
    return argparse.Namespace(lr=lr, min_lr=lr / 10, warmup_steps=warmup, steps=steps)


def branch(
    model: CausalLM,
    ffns: list[LoRAExpertFFN],
    data: dict[str, DomainData],
    args: argparse.Namespace,
    run_dir: Path,
    amp: Callable[[], AbstractContextManager[Any]],
) -> dict[str, Any]:
    """Train each domain's expert deltas on its own text; returns per-domain records."""
    records: dict[str, Any] = {}
    for expert, domain in enumerate(DOMAINS):
        done = run_dir / f"branch_{domain}.pt"
        if done.exists():
            saved = torch.load(done, weights_only=False)
            load_trainable_state(ffns, saved["state"])
            records[domain] = saved["record"]
            tqdm.write(f"branch {domain}: done earlier ({saved['record']})")
            continue
        records[domain] = _branch_one(model, ffns, expert, domain, data[domain], args, run_dir, amp)
        save_checkpoint(done, {"state": trainable_state(ffns), "record": records[domain]})
        (run_dir / "branch_partial.pt").unlink(missing_ok=True)
    return records


def _branch_one(
    model: CausalLM,
    ffns: list[LoRAExpertFFN],
    expert: int,
    domain: str,
    data: DomainData,
    args: argparse.Namespace,
    run_dir: Path,
    amp: Callable[[], AbstractContextManager[Any]],
) -> dict[str, Any]:
    set_mode(ffns, expert)
    params = [p for ffn in ffns for p in ffn.expert_parameters(expert)]
    for p in params:
        p.requires_grad_(True)
    sched = _schedule(args.branch_lr, args.branch_steps, args.branch_warmup)
    optimizer = make_optimizer(params, argparse.Namespace(weight_decay=0.0, lr=args.branch_lr))
    generator = torch.Generator().manual_seed(args.seed + expert)
    val = data.train.val_batches(args.batch_size, args.eval_batches)
    partial = run_dir / "branch_partial.pt"
    step, elapsed = 0, 0.0
    record: dict[str, Any] = {}
    if partial.exists():
        saved = torch.load(partial, weights_only=False)
        if saved["domain"] == domain:
            step, elapsed, record = _resume(saved, ffns, optimizer, generator)
    if "val_loss_before" not in record:
        # the dense path of an untrained expert is the dense model
        record["val_loss_before"] = evaluate_lm(model, val, amp())
    bar = tqdm(total=args.branch_steps, initial=step, desc=f"branch {domain}", dynamic_ncols=True)
    losses = record.setdefault("train_loss", [])
    started = time.perf_counter() - elapsed
    while step < args.branch_steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, sched)
        x, y = data.train.train_batch(args.batch_size, generator)
        with amp():
            loss = _ce(model, x, y)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(round(loss.item(), 4))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % args.save_every == 0 and step < args.branch_steps:
            _save_progress(
                partial, ffns, optimizer, generator, step, started, record, domain=domain
            )
    bar.close()
    for p in params:
        p.requires_grad_(False)
    record["val_loss_after"] = evaluate_lm(model, val, amp())
    record["tokens"] = args.branch_steps * args.batch_size * args.seq_len
    record["seconds"] = round(time.perf_counter() - started, 1)
    tqdm.write(
        f"branch {domain}: val loss {record['val_loss_before']:.4f} -> "
        f"{record['val_loss_after']:.4f} ({record['tokens']} tokens, {record['seconds']} s)"
    )
    return record


@torch.no_grad()
def mix(
    model: CausalLM,
    ffns: list[LoRAExpertFFN],
    data: dict[str, DomainData],
    args: argparse.Namespace,
    run_dir: Path,
    amp: Callable[[], AbstractContextManager[Any]],
) -> dict[str, Any]:
    """Routers from per-domain mean FFN inputs (dense model, no deltas)."""
    done = run_dir / "mix.pt"
    if done.exists():
        saved = torch.load(done, weights_only=False)
        for ffn, router in zip(ffns, saved["routers"], strict=True):
            ffn.router.copy_(router)
        return dict(saved["record"])
    started = time.perf_counter()
    set_mode(ffns, "base")
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    # per layer, per domain: the FFN inputs of the sampled tokens
    samples: list[list[torch.Tensor]] = [[] for _ in ffns]
    windows = max(1, args.mix_tokens // args.seq_len)
    for domain in tqdm(DOMAINS, desc="mix: hidden states", dynamic_ncols=True):
        for ffn in ffns:
            ffn.captured = []
        for start in range(0, windows, args.batch_size):
            x, _ = data[domain].train.train_batch(min(args.batch_size, windows - start), generator)
            with amp():
                model(x)
        for layer, ffn in enumerate(ffns):
            assert ffn.captured is not None
            samples[layer].append(torch.cat([h.reshape(-1, h.shape[-1]) for h in ffn.captured]))
            ffn.captured = None
    accuracy = []
    for layer, ffn in enumerate(ffns):
        means = torch.stack([h.mean(0) for h in samples[layer]])  # (E, C)
        rows = means - means.mean(0, keepdim=True)  # what tells the domains apart
        rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        all_h = torch.cat(samples[layer])
        logits = all_h @ rows.t()  # (N, E)
        # unit spread of each token's logits around their mean: the top-2 softmax
        # then neither ties nor saturates before fine-tuning
        scale = 1.0 / (logits - logits.mean(-1, keepdim=True)).std().clamp_min(1e-6)
        ffn.router.copy_(rows * scale * args.router_temperature)
        labels = torch.cat(
            [torch.full((len(h),), e, dtype=torch.long) for e, h in enumerate(samples[layer])]
        )
        accuracy.append((logits.argmax(-1) == labels).float().mean().item())
    model.train()
    record = {
        "tokens_per_domain": windows * args.seq_len,
        "top1_is_own_domain": [round(a, 3) for a in accuracy],
        "seconds": round(time.perf_counter() - started, 1),
    }
    tqdm.write(f"mix: top-1 = own domain expert, per layer: {record['top1_is_own_domain']}")
    save_checkpoint(done, {"routers": [f.router.detach().clone() for f in ffns], "record": record})
    return record


def _mixed_batch(
    data: dict[str, DomainData], step: int, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size windows, domains taken in turn so every domain is seen equally."""
    xs, ys = [], []
    for j in range(batch_size):
        domain = DOMAINS[(step * batch_size + j) % len(DOMAINS)]
        x, y = data[domain].train.train_batch(1, generator)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def finetune(
    model: CausalLM,
    ffns: list[LoRAExpertFFN],
    data: dict[str, DomainData],
    args: argparse.Namespace,
    run_dir: Path,
    amp: Callable[[], AbstractContextManager[Any]],
) -> dict[str, Any]:
    """Mixed-domain training of the routers (and optionally deltas) with router losses."""
    set_mode(ffns, "routed")
    params = [ffn.router for ffn in ffns]
    if args.finetune_deltas:
        params += [
            p for ffn in ffns for e in range(ffn.num_experts) for p in ffn.expert_parameters(e)
        ]
    for p in params:
        p.requires_grad_(True)
    router_lr = scaled_router_lr(ffns, args.router_lr_frac)
    groups: list[dict[str, Any]] = [
        {"params": [f.router for f in ffns], "lr": router_lr, "weight_decay": 0.0}
    ]
    if args.finetune_deltas:
        deltas = params[len(ffns) :]
        groups.append({"params": deltas, "lr": args.branch_lr / 4, "weight_decay": 0.0})
    base_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    sched = _schedule(1.0, args.finetune_steps, args.finetune_warmup)
    generator = torch.Generator().manual_seed(args.seed + 100)
    ckpt = run_dir / "finetune.pt"
    step, elapsed, record = start_or_resume(
        ckpt, ffns, optimizer, generator, {"train": [], "router_lr": router_lr}
    )
    started = time.perf_counter() - elapsed
    bar = tqdm(total=args.finetune_steps, initial=step, desc="fine-tune", dynamic_ncols=True)
    while step < args.finetune_steps:
        factor = lr_at(step, sched)
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * factor
        x, y = _mixed_batch(data, step, args.finetune_batch_size, generator)
        with amp():
            ce = _ce(model, x, y)
        aux, z = router_losses(ffns)
        loss = ce + args.aux_loss_coef * aux + args.z_loss_coef * z
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record["train"].append(
            [step, round(ce.item(), 4), round(aux.item(), 4), round(z.item(), 3)]
        )
        bar.update(1)
        bar.set_postfix(ce=f"{ce.item():.3f}", aux=f"{aux.item():.3f}", z=f"{z.item():.2f}")
        if step % args.save_every == 0 or step == args.finetune_steps:
            record["seconds"] = round(time.perf_counter() - started, 1)
            _save_progress(ckpt, ffns, optimizer, generator, step, started, record)
    bar.close()
    for p in params:
        p.requires_grad_(False)
    record["tokens"] = args.finetune_steps * args.finetune_batch_size * args.seq_len
    record.setdefault("seconds", round(time.perf_counter() - started, 1))
    return record
