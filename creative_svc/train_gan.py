"""Train the caption-conditioned GAN on Fashion-MNIST.

    python -m creative_svc.train_gan --epochs 10 --max-minutes 12 --threads 1

Hinge loss, Adam, the same caption bank as the diffusion model. Resumable
(checkpoint under `--work-dir`); the EMA of the generator is exported to
`--out`. Runs on CUDA when present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from creative_svc.fashion_data import load_split
from creative_svc.gan_model import CaptionDiscriminator, CaptionGenerator, GanConfig
from creative_svc.training_support import (
    EMA,
    CaptionBank,
    ResumableBatches,
    atomic_save,
    pick_device,
    setup_threads,
)

DEFAULT_OUT = Path(__file__).parent / "artefacts" / "gan"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--save-every", type=int, default=300)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=Path("var/creative/gan"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    args = p.parse_args(argv)
    setup_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    images, labels = load_split("train")
    cfg = GanConfig()
    gen, disc = CaptionGenerator(cfg).to(device), CaptionDiscriminator(cfg).to(device)
    ema = EMA(gen, 0.999)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.999))
    bank = CaptionBank.build()
    steps_per_epoch = len(images) // args.batch_size
    total_steps = int(args.epochs * steps_per_epoch)
    step, seconds = 0, 0.0
    ckpt_path = args.work_dir / "checkpoint.pt"
    if ckpt_path.exists() and not args.fresh:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        gen.load_state_dict(state["gen"])
        disc.load_state_dict(state["disc"])
        ema.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        bank = CaptionBank(state["captions"])
        step, seconds = state["step"], state["seconds"]
        print(f"resumed at step {step}", flush=True)

    def save() -> None:
        atomic_save(
            {
                "gen": gen.state_dict(),
                "disc": disc.state_dict(),
                "ema": ema.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "captions": bank.embeddings,
                "step": loop.step,
                "seconds": loop.seconds,
            },
            ckpt_path,
        )
        step, seconds = loop.step, loop.seconds
        training = {
            "command": "python -m creative_svc.train_gan " + " ".join(sys.argv[1:]),
            "steps": step,
            "images_seen": step * args.batch_size,
            "epochs": round(step / steps_per_epoch, 3),
            "train_minutes": round(seconds / 60, 1),
            "device": str(device),
        }
        ema.copy_buffers(gen)  # checkpoints from before buffers were copied in `update`
        shipped = CaptionGenerator(GanConfig(training=training))
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
        desc="gan",
    )
    for idx in loop:
        real, y = images[idx].to(device), labels[idx]
        caption = bank.sample(y).to(device)
        z = torch.randn(len(idx), cfg.z_dim, device=device)
        fake = gen(z, caption)
        # Discriminator: hinge loss on real and generated images of the same captions.
        loss_real = F.relu(1 - disc(real, caption)).mean()
        loss_d = loss_real + F.relu(1 + disc(fake.detach(), caption)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()  # type: ignore[no-untyped-call, unused-ignore]
        opt_d.step()
        loss_g = -disc(fake, caption).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()  # type: ignore[no-untyped-call, unused-ignore]
        opt_g.step()
        ema.update(gen)
        loop.bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")


if __name__ == "__main__":
    main()
