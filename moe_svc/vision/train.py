"""`python -m moe_svc.vision.train`: the vision encoder, then its projector into the frozen LM.

Stage 1 (encoder): the ViT and its class head learn Fashion-MNIST's train split,
each image altered the way serving may receive it (`data.augment`).
Stage 2 (projector): the encoder frozen, the LLaVA-1.5 MLP learns to put image
tokens into the served model's prompts. The LM stays frozen (no parameter gets a
gradient; the loss's gradient flows through it to the projector); the loss covers
the answer tokens only. Prompts are built the way serving builds them (chat template,
then `prompt.encode`); the template's prefix up to the user's text is the same for a
whole batch, so its keys and values are computed once per system prompt and copied in.
Stage 3 (evaluation): the LM answers about test images greedily; the figures go into
the artefact's meta.json.

Checkpoints under `--work-dir` (var/vision/) make both stages resumable: a stage
restarts from its last checkpoint, and every step's data is a function of the seed
and the step, so a resumed run sees what an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from moe_svc.loader import LoadedModel, load_model
from moe_svc.modeling import KVCache
from moe_svc.vision.adapter import DEFAULT_DIR, VisionAdapter
from moe_svc.vision.data import (
    GARMENTS,
    SYSTEM_PROMPTS,
    Example,
    ExampleSampler,
    PromptBatch,
    PromptBuilder,
    augment,
)
from moe_svc.vision.encoder import GRID, EncoderConfig, VisionEncoder
from moe_svc.vision.labels import garment_named
from moe_svc.vision.preprocess import to_model_input
from moe_svc.vision.projector import Projector, ProjectorConfig
from moe_svc.vision.prompt import IMAGE_MARK
from moe_svc.vision.seeing import embedding_fingerprint

__all__ = ["FrozenLM", "evaluate", "main"]

logger = logging.getLogger("moe_svc.vision.train")

DEFAULT_MODEL = Path("var/models/smollm2-135m-moe-8x")
EVAL_QUESTION = "What is in this picture?"


def _lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


@torch.no_grad()
def _classify(encoder: VisionEncoder, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([encoder(images[i : i + batch]).logits for i in range(0, len(images), batch)])


def _as_served(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 1, 28, 28) as serving sees them when sent as pictures (`to_model_input`)."""
    pixels = ((images[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    return torch.stack([to_model_input(Image.fromarray(p, "L")) for p in pixels])


# Stage 1 ---------------------------------------------------------------------------


def train_encoder(args: argparse.Namespace, config: EncoderConfig) -> VisionEncoder:
    """Train (or resume, or just load) the encoder; its checkpoint is work_dir/encoder.pt."""
    from creative_svc.fashion_data import load_split  # the dataset: training only

    encoder = VisionEncoder(config)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.encoder_lr, weight_decay=0.05)
    path = args.work_dir / "encoder.pt"
    done = 0  # epochs
    if path.exists():
        state = torch.load(path, weights_only=False)
        # the feature layer is the projector's choice: it leaves the encoder as trained
        if {**state["config"], "feature_layer": config.feature_layer} != config.to_dict():
            raise SystemExit(f"{path} holds another encoder config: delete it to retrain")
        encoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = state["epoch"]
    if done >= args.encoder_epochs:
        return encoder.eval()
    images, labels = load_split("train")
    images, labels = images[: args.train_images], labels[: args.train_images]
    test_images, test_labels = load_split("test")
    steps_per_epoch = len(images) // args.encoder_batch
    total = args.encoder_epochs * steps_per_epoch
    for epoch in range(done, args.encoder_epochs):
        encoder.train()
        order = torch.randperm(
            len(images), generator=torch.Generator().manual_seed(args.seed + epoch)
        )
        rng = np.random.default_rng([args.seed, epoch])
        bar = tqdm(range(steps_per_epoch), desc=f"encoder epoch {epoch + 1}/{args.encoder_epochs}")
        for i in bar:
            index = order[i * args.encoder_batch : (i + 1) * args.encoder_batch]
            for group in optimizer.param_groups:
                group["lr"] = _lr(epoch * steps_per_epoch + i, total, args.encoder_lr, 300)
            logits = encoder(augment(images[index], rng)).logits
            loss = F.cross_entropy(logits, labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        encoder.eval()
        accuracy = _accuracy(_classify(encoder, test_images), test_labels)
        tqdm.write(f"encoder epoch {epoch + 1}: test accuracy {accuracy:.4f}")
        state = {
            "config": config.to_dict(),
            "model": encoder.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch + 1,
        }
        torch.save(state, path)
    return encoder.eval()


# The frozen LM ----------------------------------------------------------------------


class FrozenLM:
    """The served LM, frozen, run over prompts whose image slots hold projected tokens."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._prefixes: dict[tuple[int, ...], KVCache] = {}

    def splice(self, batch: PromptBatch, image_tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, C) with image slots taken from image_tokens (N, t, C)."""
        embeds = self.model.model.embed_tokens(batch.ids)
        flat = image_tokens.reshape(-1, image_tokens.shape[-1]).to(embeds.dtype)
        is_image = (batch.image_slots >= 0)[..., None]
        return torch.where(is_image, flat[batch.image_slots.clamp_min(0)], embeds)

    def _cache(self, prefix: Sequence[int], rows: int, max_len: int) -> KVCache:
        """A cache of `rows` rows, each already holding `prefix` (computed once, then copied)."""
        key = tuple(prefix)
        if key not in self._prefixes:
            once = KVCache.from_config(self.model.config, 1, len(prefix))
            with torch.no_grad():
                self.model(torch.tensor([key]), cache=once, logits_to_keep=1)
            self._prefixes[key] = once
        once = self._prefixes[key]
        cache = KVCache.from_config(self.model.config, rows, len(prefix) + max_len)
        for layer in range(len(cache.keys)):
            cache.keys[layer][:, :, : len(key)] = once.keys[layer]
            cache.values[layer][:, :, : len(key)] = once.values[layer]
        cache.lengths[:] = len(key)
        cache.positions[:] = len(key)
        cache.valid[:, : len(key)] = True
        return cache

    def answer_loss(
        self, batch: PromptBatch, image_tokens: torch.Tensor, prefix: Sequence[int]
    ) -> torch.Tensor:
        """Mean cross-entropy of the answer tokens, the prompt following the cached prefix."""
        rows, width = batch.ids.shape
        cache = self._cache(prefix, rows, width)
        logits = self.model(
            batch.ids,
            batch.attention_mask,
            cache,
            inputs_embeds=self.splice(batch, image_tokens),
            logits_to_keep=batch.targets.shape[1],
        )
        return F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten())

    @torch.no_grad()
    def generate(
        self, batch: PromptBatch, image_tokens: torch.Tensor, max_new_tokens: int
    ) -> list[str]:
        """Greedy replies to whole prompts (no prefix left out), as serving decodes them."""
        rows, width = batch.ids.shape
        cache = KVCache.from_config(self.model.config, rows, width + max_new_tokens)
        logits = self.model(
            batch.ids,
            batch.attention_mask,
            cache,
            inputs_embeds=self.splice(batch, image_tokens),
            logits_to_keep=1,
        )
        stop = self.loaded.stop_token_ids
        replies: list[list[int]] = [[] for _ in range(rows)]
        done = [False] * rows
        for _ in range(max_new_tokens):
            next_ids = logits[:, -1].argmax(-1)
            for row, token in enumerate(next_ids.tolist()):
                if done[row]:
                    continue
                if token in stop:
                    done[row] = True
                else:
                    replies[row].append(token)
            if all(done):
                break
            logits = self.model(next_ids[:, None], cache=cache, logits_to_keep=1)
        return [self.loaded.tokenizer.decode(reply) for reply in replies]


# Stage 2 ----------------------------------------------------------------------------


def train_projector(
    args: argparse.Namespace,
    adapter: VisionAdapter,
    lm: FrozenLM,
    builder: PromptBuilder,
) -> None:
    """Train (or resume) the projector of `adapter`; checkpoint work_dir/projector.pt."""
    from creative_svc.fashion_data import load_split  # the dataset: training only

    projector = adapter.projector
    optimizer = torch.optim.AdamW(projector.parameters(), lr=args.projector_lr, weight_decay=0.0)
    path = args.work_dir / "projector.pt"
    step = 0
    if path.exists():
        state = torch.load(path, weights_only=False)
        if state["config"] != projector.config.to_dict():
            raise SystemExit(f"{path} holds another projector config: delete it to retrain")
        projector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    if step >= args.projector_steps:
        return
    images, labels = load_split("train")
    sampler = ExampleSampler(labels, args.seed)
    prefixes = {system: builder.prefix(system) for system in set(SYSTEM_PROMPTS)}
    bar = tqdm(range(step, args.projector_steps), desc="projector", initial=step,
               total=args.projector_steps)  # fmt: skip
    started, losses = time.perf_counter(), []
    for step in bar:
        examples = sampler.batch(step, args.projector_batch)
        system = random.Random(args.seed + step).choice(SYSTEM_PROMPTS)
        batch = builder.batch(examples, system, prefixes[system])
        index = torch.tensor([i for example in examples for i in example.image_indices])
        views = augment(images[index], np.random.default_rng([args.seed, step]))
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, args.projector_steps, args.projector_lr, 30)
        with torch.no_grad():
            patches = adapter.encoder(views).patches
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = lm.answer_loss(batch, projector(patches), prefixes[system])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}",
                        sps=f"{len(losses) / (time.perf_counter() - started):.2f}")  # fmt: skip
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.projector_steps:
            state = {
                "config": projector.config.to_dict(),
                "model": projector.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step + 1,
            }
            torch.save(state, path)


# Stage 3 ----------------------------------------------------------------------------


def _yes_no_examples(labels: Sequence[int], seed: int) -> list[Example]:
    """One question per image, "Is this a <garment>?", the right garment for half of them."""
    rng = random.Random(seed)
    examples = []
    for label in labels:
        yes = rng.random() < 0.5
        asked = label if yes else rng.choice([c for c in range(len(GARMENTS)) if c != label])
        noun = GARMENTS[asked][0]
        article = "an" if noun[0] in "aeiou" else "a"
        content = f"{IMAGE_MARK}Is this {article} {noun}?"
        examples.append(Example("yes_no", content, "", (), yes))
    return examples


def evaluate(
    adapter: VisionAdapter,
    lm: FrozenLM,
    builder: PromptBuilder,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 100,
    max_new_tokens: int = 12,
) -> dict[str, Any]:
    """The LM's greedy answers about `images` (already `to_model_input`'d), scored."""
    what = [Example("what", IMAGE_MARK + EVAL_QUESTION, "", (), None)] * len(labels)
    after = [Example("what", EVAL_QUESTION + "\n" + IMAGE_MARK, "", (), None)] * len(labels)
    yes_no = _yes_no_examples(labels.tolist(), seed=1)
    replies: dict[str, list[str]] = {"what": [], "after": [], "yes_no": []}
    for name, examples in (("what", what), ("after", after), ("yes_no", yes_no)):
        for i in tqdm(range(0, len(labels), batch_size), desc=f"evaluate {name}"):
            batch = builder.batch(examples[i : i + batch_size], with_answers=False)
            tokens = adapter.embed(images[i : i + batch_size])
            replies[name].extend(lm.generate(batch, tokens, max_new_tokens))
    truth = labels.tolist()

    def names_right(reply: str, label: int) -> bool:
        return garment_named(reply) == label

    def says_yes(reply: str) -> bool | None:
        first = reply.strip().lower()
        return True if first.startswith("yes") else False if first.startswith("no") else None

    encoder_accuracy = _accuracy(adapter.classify(images), labels)
    return {
        "eval_images": len(truth),
        "encoder_accuracy": round(encoder_accuracy, 4),
        "answer_accuracy": round(float(np.mean(
            [names_right(r, y) for r, y in zip(replies["what"], truth, strict=True)])), 4),
        "answer_accuracy_image_after_question": round(float(np.mean(
            [names_right(r, y) for r, y in zip(replies["after"], truth, strict=True)])), 4),
        "yes_no_accuracy": round(float(np.mean(
            [says_yes(r) == e.expected_yes for r, e in zip(replies["yes_no"], yes_no, strict=True)]
        )), 4),
        "sample_replies": {name: replies[name][:5] for name in replies},
    }  # fmt: skip


# The run ----------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="the served LM")
    parser.add_argument("--work-dir", type=Path, default=Path("var/vision"), help="checkpoints")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="the artefact directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder-epochs", type=int, default=6)
    parser.add_argument("--encoder-batch", type=int, default=128)
    parser.add_argument("--encoder-lr", type=float, default=1.5e-3)
    parser.add_argument("--train-images", type=int, default=60_000, help="fewer: a smoke run")
    parser.add_argument("--hidden-size", type=int, default=EncoderConfig.hidden_size)
    parser.add_argument("--layers", type=int, default=EncoderConfig.num_layers)
    parser.add_argument("--heads", type=int, default=EncoderConfig.num_heads)
    parser.add_argument("--feature-layer", type=int, default=EncoderConfig.feature_layer)
    parser.add_argument("--tokens-grid", type=int, default=2, help="image tokens per side")
    parser.add_argument("--projector-steps", type=int, default=600)
    parser.add_argument("--projector-batch", type=int, default=32)
    parser.add_argument("--projector-lr", type=float, default=1e-3)
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="run the frozen LM under bf16 autocast while training")  # fmt: skip
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--skip-eval", action="store_true", help="stop after training")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    encoder_config = EncoderConfig(
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        mlp_size=2 * args.hidden_size,
        feature_layer=args.feature_layer,
    )
    encoder = train_encoder(args, encoder_config)
    timings["encoder_s"] = round(time.perf_counter() - started)

    started = time.perf_counter()
    loaded = load_model(args.model_dir, "float32", decode_kernel=False)
    lm = FrozenLM(loaded)
    projector_config = ProjectorConfig(
        feature_size=encoder_config.hidden_size,
        patch_grid=GRID,
        tokens_grid=args.tokens_grid,
        lm_hidden_size=loaded.model.config.hidden_size,
    )
    torch.manual_seed(args.seed)  # the projector's initial weights
    adapter = VisionAdapter(encoder, Projector(projector_config))
    builder = PromptBuilder(
        loaded.template, loaded.tokenizer, loaded.stop_token_ids, adapter.tokens_per_image
    )
    train_projector(args, adapter, lm, builder)
    adapter.eval()
    timings["projector_s"] = round(time.perf_counter() - started)
    if args.skip_eval:
        return

    from creative_svc.fashion_data import load_split  # the dataset: training only

    started = time.perf_counter()
    test_images, test_labels = load_split("test")
    served = _as_served(test_images)
    chosen = torch.randperm(len(test_labels), generator=torch.Generator().manual_seed(1234))
    chosen = chosen[: args.eval_images]
    figures = evaluate(adapter, lm, builder, served[chosen], test_labels[chosen])
    figures["encoder_test_accuracy"] = round(
        _accuracy(_classify(encoder, test_images), test_labels), 4
    )
    figures["encoder_test_accuracy_as_served"] = round(
        _accuracy(_classify(encoder, served), test_labels), 4
    )
    timings["evaluation_s"] = round(time.perf_counter() - started)
    build_info = args.model_dir / "build_info.json"
    meta = {
        "model": loaded.name,
        "model_build": json.loads(build_info.read_text())["inputs"]
        if build_info.exists()
        else None,
        "embedding_fingerprint": embedding_fingerprint(loaded.model),
        "classes": [noun for noun, _ in GARMENTS],
        **figures,
        "encoder_epochs": args.encoder_epochs,
        "encoder_lr": args.encoder_lr,
        "projector_steps": args.projector_steps,
        "projector_batch": args.projector_batch,
        "projector_lr": args.projector_lr,
        "seed": args.seed,
        "timings": timings,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    adapter.save(args.out, meta)
    print(json.dumps({k: v for k, v in meta.items() if k != "sample_replies"}, indent=2))
    print(json.dumps(figures["sample_replies"], indent=2))


if __name__ == "__main__":
    main()
