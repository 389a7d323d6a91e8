"""Training data for the vision stages: question-answer pairs made from Fashion-MNIST
labels, and images altered the way serving receives them.

Every answer names its garment in words `moe_svc.vision.labels.garment_named` reads
back, the reading the evaluation scores answers with. Conversations are rendered
with the model's chat template and `moe_svc.vision.prompt.encode`, the way serving
builds them, with the image before or after the question, on its own line or not.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps

from moe_svc.chat_template import ChatTemplate
from moe_svc.vision.preprocess import to_model_input
from moe_svc.vision.prompt import IMAGE_MARK, ImagePrompt, encode

__all__ = [
    "GARMENTS",
    "SYSTEM_PROMPTS",
    "Example",
    "ExampleSampler",
    "PromptBatch",
    "PromptBuilder",
    "augment",
]

# Label order (Fashion-MNIST's): (noun phrase after "a"/"an", plural)
GARMENTS: tuple[tuple[str, str], ...] = (
    ("T-shirt", "T-shirts"),
    ("pair of trousers", "pairs of trousers"),
    ("pullover", "pullovers"),
    ("dress", "dresses"),
    ("coat", "coats"),
    ("sandal", "sandals"),
    ("shirt", "shirts"),
    ("sneaker", "sneakers"),
    ("bag", "bags"),
    ("ankle boot", "ankle boots"),
)

WHAT_QUESTIONS: tuple[str, ...] = (
    "What is in this picture?",
    "What is this?",
    "What is in the image?",
    "What do you see?",
    "What is shown here?",
    "What kind of clothing is this?",
    "Which garment is this?",
    "What item is this?",
    "Can you tell me what this is?",
    "Identify the item.",
    "What is this a picture of?",
    "Name the item in the image.",
)
DESCRIBE_QUESTIONS: tuple[str, ...] = (
    "Describe the image.",
    "Describe this picture.",
    "What does the image show?",
    "Describe what you see.",
)
YES_NO_QUESTIONS: tuple[str, ...] = (
    "Is this {x}?",
    "Is it {x}?",
    "Does this image show {x}?",
    "Is this a picture of {x}?",
)
COMPARE_QUESTIONS: tuple[str, ...] = (
    "Do these two pictures show the same kind of garment?",
    "Are these the same type of clothing?",
    "Do both images show the same item?",
)
# System messages a batch is rendered with (None: the template's default), drawn per
# batch so that one prefix serves the whole batch.
SYSTEM_PROMPTS: tuple[str | None, ...] = (
    None,
    None,
    None,
    None,
    None,
    None,
    "You are a helpful assistant.",
    "You are a helpful AI assistant that can see images.",
    "Answer briefly.",
)
# How the image and the text stand in the message: the image first or last, joined by...
_SEPARATORS: tuple[str, ...] = ("", "\n", " ", "\n\n")

# Shares of the example kinds (what / describe / yes-no / image alone / comparison).
_KINDS: tuple[str, ...] = ("what", "describe", "yes_no", "image_only", "compare")
_KIND_WEIGHTS: tuple[float, ...] = (0.45, 0.1, 0.3, 0.05, 0.1)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


@dataclass(frozen=True)
class Example:
    kind: str
    content: str  # the user message, with IMAGE_MARK where each image stands
    answer: str
    image_indices: tuple[int, ...]  # into the image set, in the order of the marks
    expected_yes: bool | None  # yes/no and comparison questions: the right reply


def _place(rng: random.Random, question: str, marks: str) -> str:
    separator = rng.choice(_SEPARATORS)
    return marks + separator + question if rng.random() < 0.6 else question + separator + marks


class ExampleSampler:
    """Draws examples over a labelled image set; the same seed gives the same examples."""

    def __init__(self, labels: torch.Tensor | list[int], seed: int) -> None:
        self.labels = [int(label) for label in labels]
        self.seed = seed
        self._by_label: list[list[int]] = [[] for _ in GARMENTS]
        for index, label in enumerate(self.labels):
            self._by_label[label].append(index)

    def batch(self, step: int, size: int) -> list[Example]:
        """The examples of training step `step` (a function of seed and step alone, so a
        resumed run sees the data an uninterrupted one would). One kind per batch: its
        prompts have about the same length, and a padded position costs a real one's time."""
        rng = random.Random(self.seed * 1_000_003 + step)
        kind = rng.choices(_KINDS, _KIND_WEIGHTS)[0]
        return [self.sample(rng, kind) for _ in range(size)]

    def sample(self, rng: random.Random, kind: str | None = None) -> Example:
        kind = kind or rng.choices(_KINDS, _KIND_WEIGHTS)[0]
        index = rng.randrange(len(self.labels))
        label = self.labels[index]
        noun = GARMENTS[label][0]
        if kind == "compare":
            return self._compare(rng, index)
        if kind == "image_only":
            return Example(kind, IMAGE_MARK, f"This is {_a(noun)}.", (index,), None)
        if kind == "describe":
            question = _place(rng, rng.choice(DESCRIBE_QUESTIONS), IMAGE_MARK)
            return Example(kind, question, f"The image shows {_a(noun)}.", (index,), None)
        if kind == "yes_no":
            yes = rng.random() < 0.5
            asked = label if yes else rng.choice([c for c in range(len(GARMENTS)) if c != label])
            question = rng.choice(YES_NO_QUESTIONS).format(x=_a(GARMENTS[asked][0]))
            answer = f"Yes, it is {_a(noun)}." if yes else f"No, it is {_a(noun)}."
            return Example(kind, _place(rng, question, IMAGE_MARK), answer, (index,), yes)
        question = _place(rng, rng.choice(WHAT_QUESTIONS), IMAGE_MARK)
        return Example("what", question, f"This is {_a(noun)}.", (index,), None)

    def _compare(self, rng: random.Random, first: int) -> Example:
        label = self.labels[first]
        same = rng.random() < 0.5
        other_label = label if same else rng.choice([c for c in range(len(GARMENTS)) if c != label])
        second = rng.choice(self._by_label[other_label])
        marks = IMAGE_MARK + rng.choice(_SEPARATORS) + IMAGE_MARK
        question = _place(rng, rng.choice(COMPARE_QUESTIONS), marks)
        if same:
            answer = f"Yes, both are {GARMENTS[label][1]}."
        else:
            answer = (
                f"No, the first is {_a(GARMENTS[label][0])} "
                f"and the second is {_a(GARMENTS[other_label][0])}."
            )
        return Example("compare", question, answer, (first, second), same)


# Sizes serving's images come in: creative_svc's own (28 upscaled) and user pictures.
_PICTURE_SIZES: tuple[int, ...] = (28, 64, 128, 256)


def _picture(image: torch.Tensor, rng: np.random.Generator) -> Image.Image:
    """One (1, 28, 28) image as a user might send it: tinted, toned, inverted, rescaled,
    mirrored, with room around it (creative_svc's styles are what its images get)."""
    from creative_svc.styles import COLOURS, TONES, Style, apply_style  # training only

    gray = ((image[0].numpy() + 1.0) / 2.0).clip(0.0, 1.0)
    if rng.random() < 0.1:  # diffusion samples carry some noise
        gray = (gray + rng.normal(0.0, 0.05, gray.shape)).clip(0.0, 1.0)
    if rng.random() < 0.65:
        picture = Image.fromarray((gray * 255).round().astype(np.uint8), "L")
    else:
        colours = [None, *COLOURS]
        tones = tuple(rng.choice(TONES, size=int(rng.integers(0, 3)), replace=False))
        style = Style(colours[int(rng.integers(len(colours)))], tones)
        picture = apply_style(gray, style, int(rng.choice(_PICTURE_SIZES)))
    if rng.random() < 0.3:
        picture = ImageOps.mirror(picture)
    if rng.random() < 0.2:
        margins = tuple(int(m) for m in rng.integers(0, picture.width // 3 + 1, size=4))
        corner = picture.getpixel((0, 0))
        fill = corner if isinstance(corner, tuple) else int(corner or 0)
        picture = ImageOps.expand(picture, border=margins, fill=fill)
    return picture


def _jitter(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Small random scale, rotation and shift: what framing by `to_model_input` leaves."""
    n = images.shape[0]
    scale = torch.from_numpy(rng.uniform(0.9, 1.1, n)).float()
    angle = torch.from_numpy(rng.uniform(-0.14, 0.14, n)).float()  # about 8 degrees
    shift = torch.from_numpy(rng.uniform(-1.5, 1.5, (n, 2)) * 2 / images.shape[-1]).float()
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # (N, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    # sampled as 0..2 so that what enters from outside is the black background
    moved = torch.nn.functional.grid_sample(images + 1.0, grid, align_corners=False) - 1.0
    return moved


def augment(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(N, 1, 28, 28) in [-1, 1] -> the same garments as serving might see them, each
    rendered as a picture and read back through `to_model_input`."""
    views = torch.stack([to_model_input(_picture(image, rng)) for image in images])
    return _jitter(views, rng)


class _Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class PromptBatch:
    """Prompts (without a shared prefix), then answers, left-padded so all answers end together."""

    ids: torch.Tensor  # (B, T) prompt then answer; image slots hold placeholders
    attention_mask: torch.Tensor  # (B, T) 1 for real tokens
    image_slots: torch.Tensor  # (B, T) index into the batch's image tokens, flattened; -1 else
    targets: torch.Tensor  # (B, A) the answer ids the last A positions predict; -100 padding


class PromptBuilder:
    """Token ids of conversations, built the way serving builds them (template, then encode)."""

    def __init__(
        self,
        template: ChatTemplate,
        tokenizer: _Tokenizer,
        stop_ids: frozenset[int],
        tokens_per_image: int,
    ) -> None:
        self.template = template
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.tokens_per_image = tokens_per_image

    def _messages(self, content: str, system: str | None) -> list[dict[str, str]]:
        user = {"role": "user", "content": content}
        return [{"role": "system", "content": system}, user] if system else [user]

    def prompt(self, content: str, system: str | None = None) -> ImagePrompt:
        text = self.template.render(self._messages(content, system), add_generation_prompt=True)
        return encode(self.tokenizer, text, self.tokens_per_image)

    def answer(self, content: str, answer: str, system: str | None = None) -> list[int]:
        """The reply's ids as the template closes it, up to and including its stop token."""
        messages = self._messages(content, system)
        prompt = self.template.render(messages, add_generation_prompt=True)
        reply = {"role": "assistant", "content": answer}
        full = self.template.render([*messages, reply], add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders a reply that does not extend its prompt")
        ids = self.tokenizer.encode(full[len(prompt) :])
        end = next(i for i, token in enumerate(ids) if token in self.stop_ids)
        return ids[: end + 1]

    def prefix(self, system: str | None = None) -> list[int]:
        """The ids every prompt with this system message starts with (up to the user's text)."""
        prompt = self.prompt(IMAGE_MARK, system)
        return prompt.ids[: prompt.image_starts[0]]

    def batch(
        self,
        examples: Sequence[Example],
        system: str | None = None,
        prefix: Sequence[int] = (),
        with_answers: bool = True,
    ) -> PromptBatch:
        """Examples as one batch, without `prefix` (cached): every prompt must start with it.
        Without answers: the prompts alone, for generation (`targets` is then empty)."""
        rows: list[list[int]] = []
        slots: list[list[int]] = []
        answers: list[list[int]] = []
        image = 0
        for example in examples:
            prompt = self.prompt(example.content, system)
            answer = self.answer(example.content, example.answer, system) if with_answers else []
            if prompt.ids[: len(prefix)] != list(prefix):
                raise ValueError(
                    f"the prompt of {example.content!r} does not start with the prefix"
                )
            row_slots = [-1] * len(prompt.ids)
            for start in prompt.image_starts:
                for j in range(self.tokens_per_image):
                    row_slots[start + j] = image * self.tokens_per_image + j
                image += 1
            rows.append((prompt.ids + answer[:-1])[len(prefix) :])
            slots.append((row_slots + [-1] * (len(answer) - 1))[len(prefix) :])
            answers.append(answer)
        width = max(len(row) for row in rows)
        answer_width = max(len(answer) for answer in answers)  # 0 without answers
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        image_slots = torch.full((len(rows), width), -1, dtype=torch.long)
        targets = torch.full((len(rows), answer_width), -100, dtype=torch.long)
        for b, (row, row_slots, answer) in enumerate(zip(rows, slots, answers, strict=True)):
            ids[b, width - len(row) :] = torch.tensor(row)
            mask[b, width - len(row) :] = 1
            image_slots[b, width - len(row) :] = torch.tensor(row_slots)
            targets[b, answer_width - len(answer) :] = torch.tensor(answer)
        return PromptBatch(ids, mask, image_slots, targets)
