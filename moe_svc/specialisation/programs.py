"""The programs step: teach the maths and code experts to answer a word problem with a program.

After Branch-Train-MiX, the maths and code experts' low-rank deltas and every layer's
router train on problems from `moe_svc.specialisation.pal_data`, each shown exactly
as the reasoning service's PAL strategy asks (`reasoning_svc.prompts.pal_messages`,
rendered by the model's chat template) and answered with its verified program in a
```python block. The loss counts the answer's tokens only. Every step also replays
a few windows of the domain corpora (plain next-token loss, domains in turn) so that
the other domains' text keeps its perplexity, with the load-balancing and z losses on
the routers as in the fine-tune step.

Resumable like the other steps: `programs.pt` in the run directory holds the
trainable state, the optimizer and the data order; a finished run is not repeated.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from moe_svc.chat_template import ChatTemplate
from moe_svc.modeling import CausalLM
from moe_svc.specialisation.domains import EXPERT_OF
from moe_svc.specialisation.lora import (
    LoRAExpertFFN,
    load_trainable_state,
    set_mode,
    trainable_state,
)
from moe_svc.specialisation.steps import (
    DomainData,
    _ce,
    _mixed_batch,
    _save_progress,
    _schedule,
    router_losses,
    scaled_router_lr,
    start_or_resume,
)
from moe_svc.train import lr_at, save_checkpoint
from moe_svc.training.data import Tokenizer
from reasoning_svc.prompts import pal_messages

__all__ = ["ProgramExample", "answer_text", "load_examples", "program_batch", "programs"]

# the experts that learn to write programs
PROGRAM_EXPERTS: tuple[int, ...] = (EXPERT_OF["mathematics"], EXPERT_OF["code"])


@dataclass(frozen=True)
class ProgramExample:
    prompt: list[int]  # the PAL conversation up to the assistant's turn
    answer: list[int]  # the program in a ```python block, then the end-of-turn token


def answer_text(program: str, end_of_turn: str) -> str:
    """What the model should reply: the form PAL extracts its program from."""
    return f"```python\n{program}\n```{end_of_turn}"


def load_examples(
    path: Path,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    end_of_turn: str,
    limit: int,
    max_tokens: int,
) -> list[ProgramExample]:
    """The first `limit` problems of a pal_data JSON-lines file, tokenized.

    A problem whose prompt and answer together exceed `max_tokens` is skipped (the
    count of those is small and shown by the caller through the record).
    """
    examples: list[ProgramExample] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if len(examples) >= limit:
            break
        if not line.strip():
            continue
        problem = json.loads(line)
        prompt = tokenizer.encode(template.render(pal_messages(problem["question"])))
        answer = tokenizer.encode(answer_text(problem["program"], end_of_turn))
        if len(prompt) + len(answer) <= max_tokens:
            examples.append(ProgramExample(prompt, answer))
    if not examples:
        raise ValueError(f"{path}: no problem fits in {max_tokens} tokens with its prompt")
    return examples


def program_batch(
    examples: list[ProgramExample], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Left-padded (input_ids, attention_mask, labels, keep) for a batch of examples.

    labels (B, keep) are the next tokens of the last `keep` positions, -100 where the
    next token is not part of an answer: only the answer is learnt, and only the last
    `keep` positions (which cover every answer) need the vocabulary projection.
    """
    rows = [e.prompt + e.answer for e in examples]
    width = max(len(r) for r in rows)
    keep = max(len(e.answer) for e in examples)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, example) in enumerate(zip(rows, examples, strict=True)):
        start = width - len(row)
        ids[i, start:] = torch.tensor(row)
        mask[i, start:] = 1
        # position p predicts token p + 1: the answer's tokens are the last len(answer)
        answer = torch.tensor(example.answer)
        labels[i, width - len(answer) - 1 : width - 1] = answer
    return ids, mask, labels[:, -keep - 1 :], keep + 1


@torch.no_grad()
def answer_loss(
    model: CausalLM, examples: list[ProgramExample], pad_id: int, batch_size: int
) -> float:
    """Mean cross-entropy of the answers' tokens (held-out problems)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        ids, mask, labels, keep = program_batch(examples[start : start + batch_size], pad_id)
        logits = model(ids, mask, logits_to_keep=keep)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += int((labels != -100).sum())
    model.train()
    return total / max(1, count)


def programs(
    model: CausalLM,
    ffns: list[LoRAExpertFFN],
    examples: list[ProgramExample],
    held_out: list[ProgramExample],
    data: dict[str, DomainData],
    args: argparse.Namespace,
    run_dir: Path,
    amp: Callable[[], AbstractContextManager[Any]],
    pad_id: int,
) -> dict[str, Any]:
    """Train the program experts' deltas and the routers; returns the step's record."""
    done = run_dir / "programs_done.pt"
    if done.exists():
        saved = torch.load(done, weights_only=False)
        load_trainable_state(ffns, saved["state"])
        tqdm.write(f"programs: done earlier ({saved['record']['answer_loss_after']:.4f})")
        return dict(saved["record"])
    set_mode(ffns, "routed")
    deltas = [p for f in ffns for e in PROGRAM_EXPERTS for p in f.expert_parameters(e)]
    routers = [f.router for f in ffns]
    params = deltas + routers
    for p in params:
        p.requires_grad_(True)
    router_lr = scaled_router_lr(ffns, args.router_lr_frac)
    groups: list[dict[str, Any]] = [
        {"params": deltas, "lr": args.programs_lr, "weight_decay": 0.0},
        {"params": routers, "lr": router_lr, "weight_decay": 0.0},
    ]
    base_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
    sched = _schedule(1.0, args.programs_steps, args.programs_warmup)
    generator = torch.Generator().manual_seed(args.seed + 200)
    ckpt = run_dir / "programs.pt"
    step, elapsed, record = start_or_resume(
        ckpt, ffns, optimizer, generator, {"train": [], "router_lr": router_lr}
    )
    if "answer_loss_before" not in record:
        record["answer_loss_before"] = answer_loss(model, held_out, pad_id, args.programs_batch)
        record["examples"] = len(examples)
    # a fixed permutation of the examples, drawn once; the step indexes into it
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(args.seed))
    started = time.perf_counter() - elapsed
    bar = tqdm(total=args.programs_steps, initial=step, desc="programs", dynamic_ncols=True)
    while step < args.programs_steps:
        factor = lr_at(step, sched)
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * factor
        first = step * args.programs_batch
        picked = [
            examples[int(order[(first + j) % len(examples)])] for j in range(args.programs_batch)
        ]
        ids, mask, labels, keep = program_batch(picked, pad_id)
        with amp():
            logits = model(ids, mask, logits_to_keep=keep)
            ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        aux, z = router_losses(ffns)
        loss = ce + args.aux_loss_coef * aux + args.z_loss_coef * z
        replay_ce = torch.zeros(())
        if args.programs_replay > 0:
            x, y = _mixed_batch(data, step, args.programs_replay, generator)
            with amp():
                replay_ce = _ce(model, x, y)
            aux_r, z_r = router_losses(ffns)
            loss = loss + replay_ce + args.aux_loss_coef * aux_r + args.z_loss_coef * z_r
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record["train"].append([step, round(ce.item(), 4), round(replay_ce.item(), 4)])
        bar.update(1)
        bar.set_postfix(answer=f"{ce.item():.3f}", replay=f"{replay_ce.item():.3f}")
        if step % args.save_every == 0 and step < args.programs_steps:
            record["seconds"] = round(time.perf_counter() - started, 1)
            _save_progress(ckpt, ffns, optimizer, generator, step, started, record)
    bar.close()
    for p in params:
        p.requires_grad_(False)
    record["answer_loss_after"] = answer_loss(model, held_out, pad_id, args.programs_batch)
    record["seconds"] = round(time.perf_counter() - started, 1)
    record["answers_seen"] = args.programs_steps * args.programs_batch
    tqdm.write(
        f"programs: held-out answer loss {record['answer_loss_before']:.4f} -> "
        f"{record['answer_loss_after']:.4f} ({record['answers_seen']} answers, "
        f"{record['seconds']} s)"
    )
    save_checkpoint(done, {"state": trainable_state(ffns), "record": record})
    ckpt.unlink(missing_ok=True)
    return record
