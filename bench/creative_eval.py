"""creative_svc's generators judged by our Fashion-MNIST classifier.

    .venv/bin/python -m bench.creative_eval                      # full table (~10 min on 2 cores)
    .venv/bin/python -m bench.creative_eval --per-prompt 4 --threads 1
    .venv/bin/python -m bench.creative_eval --commit-grid        # also refresh the README grid

- Judge: `creative_svc/artefacts/judge` (python -m creative_svc.train_judge), its test
  accuracy measured here on the 10k test images.
- Prompt adherence: the share of generated images that the judge assigns to the
  prompted class, over `captions.EVAL_PROMPTS` (two per class, phrasings held out of
  training), for diffusion without guidance (scale 1) and with it (`--guidance SCALE` at
  the served interval, `SCALE:MAX_T` for guidance at timesteps <= MAX_T only, `SCALE:1000`
  at every step), and for the GAN. The
  reference in the same run: the judge's own accuracy on real test images (the ceiling).
- Frechet distance on the judge's 128-d features (FID's recipe with our judge in place
  of Inception) between generated images and real test images; the reference is the
  distance between two disjoint real samples of the same size (the noise floor).
- Images/s: diffusion at 10, 25 and 50 DDIM steps (guided, batches of 10) and the GAN,
  with ratios to the GAN.
- A grid of samples per class (rows) from each generator: `var/bench/creative/samples.png`
  (git-ignored); `--commit-grid` copies it to `creative_svc/artefacts/samples.png`.

Needs the dataset (`apt-get install -y dataset-fashion-mnist`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from creative_svc.captions import CLASS_NAMES, EVAL_PROMPTS
from creative_svc.conditioning import PromptEncoder
from creative_svc.fashion_data import load_split
from creative_svc.generators import DiffusionGenerator, GanGenerator, ImageGenerator
from creative_svc.judge import FashionJudge
from creative_svc.settings import ARTEFACTS_DIR, CreativeSettings
from creative_svc.training_support import setup_threads

OUT_DIR = Path("var/bench/creative")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), features (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^1/2) = sum sqrt(eig(S_a^1/2 S_b S_a^1/2)), all symmetric PSD.
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = float(np.sqrt(np.clip(eig, 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


@torch.no_grad()
def judge_images(judge: FashionJudge, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), features (N, 128)) for images (N, 28, 28) in [0, 1]."""
    x = torch.from_numpy(images).float().unsqueeze(1) * 2 - 1
    features = judge.features(x)
    return judge.head(features).argmax(1).numpy(), features.numpy()


def run_generator(
    generator: ImageGenerator,
    encoder: PromptEncoder,
    per_prompt: int,
    *,
    steps: int,
    guidance_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28), prompted labels (N,)) over every evaluation prompt."""
    images, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        for j, prompt in enumerate(EVAL_PROMPTS[name]):
            caption = encoder.encode(prompt).embedding
            seed = 10_000 * label + 1000 * j
            images.append(
                generator.generate(
                    caption,
                    per_prompt,
                    seed,
                    steps=steps,
                    guidance_scale=guidance_scale,
                    sampler="ddim",
                )
            )
            labels += [label] * per_prompt
    return np.concatenate(images), np.array(labels)


def images_per_second(
    generator: ImageGenerator, caption: np.ndarray, steps: int, guidance: float
) -> float:
    generator.generate(caption, 2, 0, steps=2, guidance_scale=guidance, sampler="ddim")  # warm
    start = time.perf_counter()
    generator.generate(caption, 10, 1, steps=steps, guidance_scale=guidance, sampler="ddim")
    return 10 / (time.perf_counter() - start)


def sample_grid(rows: list[tuple[str, np.ndarray]], path: Path) -> None:
    """One row per (label, images (k, 28, 28)); 3x upscaled, labels on the left."""
    scale, pad, label_w = 3, 2, 150
    k = rows[0][1].shape[0]
    cell = 28 * scale + pad
    grid = Image.new("L", (label_w + k * cell, len(rows) * cell), 0)
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), label, fill=255)
        for c, img in enumerate(images):
            tile = Image.fromarray((img * 255).round().astype(np.uint8))
            tile = tile.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
            grid.paste(tile, (label_w + c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


# What a user would type for each class ("a trouser", the dataset's label, is misread by
# MiniLM as footwear: it is not how anyone asks for trousers).
GRID_PROMPTS = {
    "t-shirt": "a t-shirt",
    "trouser": "a pair of trousers",
    "pullover": "a pullover",
    "dress": "a dress",
    "coat": "a coat",
    "sandal": "a sandal",
    "shirt": "a shirt",
    "sneaker": "a sneaker",
    "bag": "a bag",
    "ankle boot": "an ankle boot",
}


def write_grid(
    encoder: PromptEncoder,
    diffusion: DiffusionGenerator,
    gan: GanGenerator,
    steps: int,
    guidance: float,
    args: argparse.Namespace,
) -> None:
    """Six diffusion and four GAN samples per class, one row per class."""
    rows = []
    for label, cls in enumerate(CLASS_NAMES):
        caption = encoder.encode(GRID_PROMPTS[cls]).embedding
        d = diffusion.generate(caption, 6, 7 + label, steps=steps, guidance_scale=guidance)
        g = gan.generate(caption, 4, 7 + label, steps=0, guidance_scale=1.0)
        rows.append((f"{GRID_PROMPTS[cls]}: diffusion|gan", np.concatenate([d, g])))
    grid_path = OUT_DIR / "samples.png"
    sample_grid(rows, grid_path)
    print(f"\nsample grid (6 diffusion + 4 GAN per class): {grid_path}")
    if args.commit_grid:
        shutil.copy(grid_path, args.weights_dir / "samples.png")
        print(f"copied to {args.weights_dir / 'samples.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-prompt", type=int, default=10, help="images per prompt")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps for adherence")
    parser.add_argument(
        "--guidance",
        nargs="+",
        default=None,
        help="guided rows, SCALE or SCALE:MAX_T (default: the served scale and interval)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--weights-dir", type=Path, default=ARTEFACTS_DIR)
    parser.add_argument("--commit-grid", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--grid-only", action="store_true", help="only the sample grid")
    args = parser.parse_args()
    setup_threads(args.threads)
    served = CreativeSettings()
    serving_guidance = served.default_guidance_scale  # for speed and the grid
    if args.grid_only:
        write_grid(
            PromptEncoder.load(args.threads),
            DiffusionGenerator.load(args.weights_dir / "diffusion", served.guidance_max_t),
            GanGenerator.load(args.weights_dir / "gan"),
            args.steps,
            serving_guidance,
            args,
        )
        return

    judge = FashionJudge.load(args.weights_dir / "judge")
    test_x, test_y = load_split("test")
    real = ((test_x[:, 0] + 1) / 2).numpy()
    real_pred, real_feat = judge_images(judge, real)
    judge_acc = float((real_pred == test_y.numpy()).mean())
    encoder = PromptEncoder.load(args.threads)
    diffusion = DiffusionGenerator.load(args.weights_dir / "diffusion", served.guidance_max_t)
    gan = GanGenerator.load(args.weights_dir / "gan")
    print(f"judge test accuracy: {judge_acc:.4f} (10k test images)")
    print("diffusion training:", json.dumps(diffusion.model.cfg.training))
    print("gan training:", json.dumps(gan.model.cfg.training))

    n_gen = len(CLASS_NAMES) * 2 * args.per_prompt
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real))
    # Generated sets are compared with the rest of the test set; the floor is a real set of
    # the same size compared with that same rest.
    reference_feat = real_feat[order[n_gen:]]
    floor = frechet_distance(real_feat[order[:n_gen]], reference_feat)

    configs: list[tuple[str, ImageGenerator, float]] = [
        ("diffusion, no guidance (1.0)", diffusion, 1.0)
    ]
    for spec in args.guidance or [f"{serving_guidance}:{served.guidance_max_t}"]:
        scale, _, max_t = spec.partition(":")
        limit = int(max_t) if max_t else served.guidance_max_t
        interval = DiffusionGenerator(diffusion.model, limit)
        where = "every step" if limit >= diffusion.train_timesteps else f"t <= {limit}"
        configs.append((f"diffusion, guidance {float(scale)} ({where})", interval, float(scale)))
    configs += [("gan", gan, 1.0)]
    print(
        f"\n{n_gen} images per row ({args.per_prompt} x 20 prompts), "
        f"DDIM {args.steps} steps; FD reference (real vs real, same size): {floor:.2f}\n"
    )
    print("| generator | adherence | ratio to judge accuracy | Frechet distance | FD / floor | s |")
    print("|---|---|---|---|---|---|")
    per_class: dict[str, np.ndarray] = {}
    for name, generator, guidance in configs:
        start = time.perf_counter()
        images, labels = run_generator(
            generator, encoder, args.per_prompt, steps=args.steps, guidance_scale=guidance
        )
        seconds = time.perf_counter() - start
        pred, feat = judge_images(judge, images)
        hits = pred == labels
        adherence = float(hits.mean())
        per_class[name] = np.array([hits[labels == i].mean() for i in range(len(CLASS_NAMES))])
        fd = frechet_distance(feat, reference_feat)
        print(
            f"| {name} | {adherence:.3f} | {adherence / judge_acc:.3f} | {fd:.2f} | "
            f"{fd / floor:.1f}x | {seconds:.0f} |",
            flush=True,
        )
    print("\nper-class adherence:")
    print("| class | " + " | ".join(per_class) + " |")
    print("|---|" + "---|" * len(per_class))
    for i, cls in enumerate(CLASS_NAMES):
        print(f"| {cls} | " + " | ".join(f"{v[i]:.2f}" for v in per_class.values()) + " |")

    if not args.skip_speed:
        caption = encoder.encode("a sneaker").embedding
        gan_rate = images_per_second(gan, caption, 1, 1.0)
        print("\n| generator | images/s | ratio to GAN |")
        print("|---|---|---|")
        for steps in (10, 25, 50):
            rate = images_per_second(diffusion, caption, steps, serving_guidance)
            print(f"| diffusion DDIM {steps} steps (guided) | {rate:.2f} | {rate / gan_rate:.4f} |")
        print(f"| gan (one forward pass) | {gan_rate:.1f} | 1.0 |", flush=True)

    write_grid(encoder, diffusion, gan, args.steps, serving_guidance, args)


if __name__ == "__main__":
    main()
