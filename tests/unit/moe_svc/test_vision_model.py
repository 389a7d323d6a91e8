"""The vision adapter: preprocessing, the committed artefact, and the generated training data."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from creative_svc.fashion_data import DATASET_DIR, load_split
from moe_svc.chat_template import DEFAULT_TEMPLATE, ChatTemplate
from moe_svc.vision.adapter import DEFAULT_DIR, VisionAdapter
from moe_svc.vision.data import GARMENTS, ExampleSampler, PromptBuilder, augment
from moe_svc.vision.labels import garment_named
from moe_svc.vision.preprocess import to_model_input
from moe_svc.vision.prompt import IMAGE_MARK, PLACEHOLDER_ID

STOP = 2


class CharTokenizer:
    """One id per character, ChatML's markers as single ids (<|im_end|> is the stop id)."""

    def encode(self, text: str) -> list[int]:
        special = {"<|im_start|>": 1, "<|im_end|>": STOP}
        ids: list[int] = []
        for piece in re.split(r"(<\|im_start\|>|<\|im_end\|>)", text):
            ids.extend([special[piece]] if piece in special else [ord(c) + 10 for c in piece])
        return ids


def _picture(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels.astype(np.uint8), "L")


def _rectangle(
    height: int, width: int, canvas: tuple[int, int], light_on_dark: bool
) -> Image.Image:
    background, garment = (0, 230) if light_on_dark else (255, 25)
    pixels = np.full(canvas, background)
    top, left = (canvas[0] - height) // 2, (canvas[1] - width) // 2
    pixels[top : top + height, left : left + width] = garment
    return _picture(pixels)


# Preprocessing ---------------------------------------------------------------------


def test_any_picture_becomes_one_28x28_channel_in_range() -> None:
    rgb = Image.new("RGB", (300, 120), (200, 30, 30))
    x = to_model_input(rgb)
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1


def test_a_garment_on_white_is_inverted_to_light_on_black() -> None:
    on_white = to_model_input(_rectangle(40, 30, (64, 64), light_on_dark=False))
    on_black = to_model_input(_rectangle(40, 30, (64, 64), light_on_dark=True))
    assert on_white[0, 0, 0] == pytest.approx(-1)  # the background is black
    assert on_white[0, 14, 14] == pytest.approx(1)  # the garment is white
    assert torch.allclose(on_white, on_black, atol=0.05)


def test_transparent_background_counts_as_white() -> None:
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse((10, 10, 40, 40), fill=(20, 20, 20, 255))
    x = to_model_input(rgba)
    assert x[0, 0, 0] == pytest.approx(-1) and x[0, 14, 14] == pytest.approx(1, abs=0.02)


def test_aspect_ratio_is_kept_and_the_garment_fills_its_long_side() -> None:
    x = to_model_input(_rectangle(90, 30, (200, 120), light_on_dark=True))
    columns = (x[0] > 0).any(0).nonzero().flatten()
    rows = (x[0] > 0).any(1).nonzero().flatten()
    assert rows.min() == 0 and rows.max() == 27  # the long side spans the frame
    assert 8 <= len(columns) <= 11  # 28 * 30 / 90, centred
    assert abs((columns.min() + columns.max()).item() / 2 - 13.5) <= 1


def test_a_dim_garment_is_stretched_to_full_contrast() -> None:
    dim = _picture(np.pad(np.full((20, 20), 60), 4))
    assert to_model_input(dim).max() == pytest.approx(1)


# The committed artefact --------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter() -> VisionAdapter:
    return VisionAdapter.load()


def test_the_artefact_loads_in_eval_mode() -> None:
    loaded = VisionAdapter.load(DEFAULT_DIR)
    assert not loaded.training
    assert loaded.hidden_size == loaded.meta["hidden_size"] == 576
    assert loaded.tokens_per_image == loaded.meta["tokens_per_image"]


def test_embed_and_classify_shapes(adapter: VisionAdapter) -> None:
    images = torch.zeros(3, 1, 28, 28)
    tokens = adapter.embed(images)
    assert tokens.shape == (3, adapter.tokens_per_image, adapter.hidden_size)
    assert tokens.dtype == torch.float32 and not tokens.requires_grad
    assert adapter.classify(images).shape == (3, 10)


@pytest.mark.skipif(not DATASET_DIR.exists(), reason="Fashion-MNIST is not installed")
def test_adapter_classifies_real_test_images_sent_as_pictures(adapter: VisionAdapter) -> None:
    images, labels = load_split("test")
    # every 10th test image: 1000, enough that the share is within a point or two of the
    # whole split's (0.888 as served, meta.json)
    pixels = ((images[::10, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    served = torch.stack([to_model_input(_picture(p)) for p in pixels])
    right = (adapter.classify(served).argmax(-1) == labels[::10]).float().mean().item()
    assert right >= 0.85


# Training data -------------------------------------------------------------------------


def test_sampler_is_deterministic() -> None:
    labels = [i % 10 for i in range(100)]
    assert ExampleSampler(labels, 3).batch(7, 16) == ExampleSampler(labels, 3).batch(7, 16)
    assert ExampleSampler(labels, 3).batch(7, 16) != ExampleSampler(labels, 3).batch(8, 16)


def test_every_answer_names_its_garments() -> None:
    labels = [i % 10 for i in range(200)]
    rng = random.Random(0)
    sampler = ExampleSampler(labels, 0)
    for _ in range(500):
        example = sampler.sample(rng)
        assert example.content.count(IMAGE_MARK) == len(example.image_indices)
        # a comparison names each image's garment in its own clause
        clauses = (
            example.answer.split(" and the second")
            if len(example.image_indices) > 1
            else [example.answer]
        )
        named = [garment_named(clause) for clause in clauses]
        assert set(named) == {labels[i] for i in example.image_indices}
        if example.expected_yes is not None:
            assert example.answer.startswith("Yes" if example.expected_yes else "No")
    for label, (noun, _) in enumerate(GARMENTS):
        assert garment_named(f"This is a {noun}.") == label


def test_prompt_batch_puts_image_slots_and_answers_where_serving_has_them() -> None:
    builder = PromptBuilder(ChatTemplate(DEFAULT_TEMPLATE), CharTokenizer(), frozenset({STOP}), 4)
    examples = ExampleSampler([i % 10 for i in range(50)], 0).batch(0, 6)
    prefix = builder.prefix()
    batch = builder.batch(examples, prefix=prefix)
    images = sum(len(e.image_indices) for e in examples)
    assert prefix == CharTokenizer().encode("<|im_start|>user\n")
    assert sorted(batch.image_slots[batch.image_slots >= 0].tolist()) == list(range(4 * images))
    assert (batch.ids[batch.image_slots >= 0] == PLACEHOLDER_ID).all()
    assert (batch.targets[:, -1] == STOP).all()  # answers end together, at the stop token
    for row, example in zip(range(len(examples)), examples, strict=True):
        answer = batch.targets[row][batch.targets[row] >= 0].tolist()
        assert answer == [*CharTokenizer().encode(example.answer), STOP]
        # the answer's tokens but the last are the input's last tokens (teacher forcing)
        assert batch.ids[row, -(len(answer) - 1) :].tolist() == answer[:-1]


def test_augmented_images_keep_shape_and_range() -> None:
    images, _ = (
        load_split("test") if DATASET_DIR.exists() else (torch.rand(8, 1, 28, 28) * 2 - 1, None)
    )
    out = augment(images[:8], np.random.default_rng(0))
    assert out.shape == (8, 1, 28, 28)
    assert out.min() >= -1.001 and out.max() <= 1.001
