"""Train the Fashion-MNIST judge classifier (evaluation only; the service does not load it).

    python -m creative_svc.train_judge --epochs 4 --threads 1

Prints and records the test accuracy in `artefacts/judge/meta.json`. Runs on
CUDA when present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from creative_svc.fashion_data import load_split
from creative_svc.judge import FashionJudge
from creative_svc.training_support import pick_device, setup_threads

DEFAULT_OUT = Path(__file__).parent / "artefacts" / "judge"


@torch.no_grad()
def accuracy(model: FashionJudge, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), 1000):
        logits = model(images[start : start + 1000].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start : start + 1000]).sum())
    return correct / len(images)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    setup_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    model = FashionJudge().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(train_x) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="judge", unit="step", mininterval=5)
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(len(train_x) // args.batch_size):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x = train_x[idx]
            # Small random shifts: generated images are not always centred like the dataset's.
            dx, dy = torch.randint(-2, 3, (2,)).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x.to(device)), train_y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        print(f" test accuracy {accuracy(model, test_x, test_y):.4f}", flush=True)
    bar.close()
    acc = accuracy(model, test_x, test_y)
    model.cpu().save(
        args.out,
        {
            "test_accuracy": round(acc, 4),
            "epochs": args.epochs,
            "train_minutes": round((time.perf_counter() - start) / 60, 1),
            "command": "python -m creative_svc.train_judge " + " ".join(sys.argv[1:]),
        },
    )
    print(f"judge test accuracy {acc:.4f} -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
