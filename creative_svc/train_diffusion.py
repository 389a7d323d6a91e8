"""Train the caption-conditioned diffusion UNet on Fashion-MNIST.

    python -m creative_svc.train_diffusion --epochs 3 --max-minutes 55 --threads 1

DDPM noise schedule, epsilon prediction, captions from `captions.py` embedded
with all-MiniLM-L6-v2, the caption dropped (-> learned null embedding) with
probability `--cond-dropout` so classifier-free guidance works at sampling time.
Resumable: a checkpoint under `--work-dir` is written every `--save-every` steps
and at the end; running the same command again continues from it. The EMA
weights are exported to `--out` (the committed artefact) at every checkpoint.
Runs on CUDA when present (`--device auto`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from creative_svc.diffusion_model import CaptionUNet, DiffusionConfig, make_noise_scheduler
from creative_svc.fashion_data import load_split
from creative_svc.training_support import (
    EMA,
    CaptionBank,
    ResumableBatches,
    atomic_save,
    load_compatible,
    pick_device,
    setup_threads,
)

DEFAULT_OUT = Path(__file__).parent / "artefacts" / "diffusion"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the 60k images")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--cond-lr-scale", type=float, default=3.0, help="lr multiplier, caption path")
    p.add_argument(
        "--high-noise-share",
        type=float,
        default=0.5,
        help="share of each batch with t drawn from the noisier half, where the garment's "
        "shape (what the caption decides) is made",
    )
    p.add_argument("--cond-dropout", type=float, default=0.15)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument(
        "--min-snr-gamma",
        type=float,
        default=5.0,
        help="Min-SNR loss weighting (Hang et al. 2023; 0: plain MSE): less weight on "
        "nearly clean steps, so the few steps a CPU affords go to global shape",
    )
    p.add_argument("--save-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="bf16 autocast (on a busy 2-core CPU fp32 measured faster; try it on GPUs)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=Path("var/creative/diffusion"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    images, labels = load_split("train")
    cfg = DiffusionConfig()
    model = CaptionUNet(cfg).to(device)
    ema = EMA(model, args.ema_decay)
    # The caption path learns at `--cond-lr-scale` x the rate: it starts from nothing while
    # the denoiser has the whole image to learn from, and guidance needs it to matter.
    cond_params = [*model.caption_proj.parameters(), model.null_embedding]
    cond_ids = {id(p) for p in cond_params}
    rest = [p for p in model.parameters() if id(p) not in cond_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": rest, "lr_scale": 1.0},
            {"params": cond_params, "lr_scale": args.cond_lr_scale},
        ],
        lr=args.lr,
        weight_decay=0.0,
    )
    noise_scheduler = make_noise_scheduler(cfg)
    alphas = noise_scheduler.alphas_cumprod.to(device)  # type: ignore[attr-defined, unused-ignore]

    steps_per_epoch = len(images) // args.batch_size
    total_steps = math.ceil(args.epochs * steps_per_epoch)
    step, seconds = 0, 0.0
    ckpt_path = args.work_dir / "checkpoint.pt"
    if ckpt_path.exists() and not args.fresh:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        bank = CaptionBank(state["captions"])
        skipped = load_compatible(model, state["model"])
        if skipped:
            # The architecture changed under a running training (the conditioning path):
            # keep what still fits, start the rest, the optimizer and the average afresh.
            print(f"resuming with new weights for: {', '.join(skipped)}", flush=True)
            ema = EMA(model, args.ema_decay)
        else:
            ema.load_state_dict(state["ema"])
            ema.decay = args.ema_decay
            try:
                optimizer.load_state_dict(state["optimizer"])
            except ValueError:
                print("optimizer parameter groups changed: fresh optimizer state", flush=True)
        step, seconds = state["step"], state["seconds"]
        print(f"resumed at step {step} ({step * args.batch_size} images)", flush=True)
    else:
        bank = CaptionBank.build()
    # Deterministic from the caption bank, so set on every start (fresh or resumed).
    with torch.no_grad():
        model.set_references(bank.embeddings.to(device))
        averaged: CaptionUNet = ema.model  # type: ignore[assignment, unused-ignore]
        averaged.set_references(bank.embeddings.to(device))

    def save() -> None:
        atomic_save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "captions": bank.embeddings,
                "step": loop.step,
                "seconds": loop.seconds,
            },
            ckpt_path,
        )
        step, seconds = loop.step, loop.seconds
        shipped = CaptionUNet(
            DiffusionConfig(
                training={
                    "command": "python -m creative_svc.train_diffusion " + " ".join(sys.argv[1:]),
                    "steps": step,
                    "images_seen": step * args.batch_size,
                    "epochs": round(step / steps_per_epoch, 3),
                    "train_minutes": round(seconds / 60, 1),
                    "device": str(device),
                    "cond_dropout": args.cond_dropout,
                    "min_snr_gamma": args.min_snr_gamma,
                    "cond_lr_scale": args.cond_lr_scale,
                    "high_noise_share": args.high_noise_share,
                }
            )
        )
        shipped.load_state_dict(ema.model.state_dict())
        shipped.save(args.out)

    loop = ResumableBatches(
        len(images),
        args.batch_size,
        total_steps,
        step=step,
        seconds=seconds,
        max_minutes=args.max_minutes,
        save_every=args.save_every,
        save=save,
        desc="diffusion",
    )
    model.train()
    for idx in loop:
        x0, y = images[idx].to(device), labels[idx]
        caption = bank.sample(y).to(device)
        drop = torch.rand(len(idx), device=device) < args.cond_dropout
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg.num_train_timesteps, (len(idx),), device=device)
        n_high = int(args.high_noise_share * len(idx))
        half = cfg.num_train_timesteps // 2
        t[:n_high] = torch.randint(half, cfg.num_train_timesteps, (n_high,), device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in optimizer.param_groups:
            warm = min(1.0, (loop.step + 1) / args.warmup_steps)
            group["lr"] = args.lr * group.get("lr_scale", 1.0) * warm
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            pred = model(x_t, t, caption, drop)
        if args.min_snr_gamma > 0:
            snr = a.view(-1) / (1 - a.view(-1))
            weight = snr.clamp(max=args.min_snr_gamma) / snr  # (B,)
            per_image = F.mse_loss(pred.float(), noise, reduction="none").mean((1, 2, 3))
            loss = (weight * per_image).mean()
        else:
            loss = F.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)
        rate = loop.step * args.batch_size / max(loop.seconds, 1e-9)  # steps done so far
        loop.bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.0f}")


if __name__ == "__main__":
    main()
