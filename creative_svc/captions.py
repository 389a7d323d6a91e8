"""The ten Fashion-MNIST classes and the captions that describe them.

The generators are conditioned on the all-MiniLM-L6-v2 embedding of a caption,
so training draws captions from many templates and synonyms per class: that is
what lets a paraphrase ("running shoe", "trainers") land near its class. Colour
and tone words are mixed into the training captions too; the images are
grayscale, so the model learns to ignore them, and the style module applies them
afterwards.
"""

from __future__ import annotations

import random

__all__ = [
    "CLASS_NAMES",
    "CLASS_SYNONYMS",
    "EVAL_PROMPTS",
    "class_index",
    "training_captions",
]

# Fashion-MNIST label order.
CLASS_NAMES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

CLASS_SYNONYMS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "tee", "tee shirt", "top", "short-sleeved top", "crew neck tee"),
    "trouser": ("trousers", "pants", "jeans", "slacks", "chinos", "leggings", "pair of trousers"),
    "pullover": ("pullover", "sweater", "jumper", "knitted sweater", "sweatshirt", "cardigan"),
    "dress": ("dress", "gown", "summer dress", "evening dress", "frock", "sundress", "maxi dress"),
    "coat": ("coat", "jacket", "overcoat", "winter coat", "parka", "raincoat", "trench coat"),
    "sandal": ("sandal", "sandals", "flip-flops", "strappy sandal", "open shoe", "slide sandal"),
    "shirt": ("shirt", "button-up shirt", "blouse", "dress shirt", "collared shirt", "flannel"),
    "sneaker": ("sneaker", "sneakers", "trainers", "running shoe", "sports shoe", "tennis shoe"),
    "bag": ("bag", "handbag", "purse", "tote bag", "shoulder bag", "backpack", "clutch"),
    "ankle boot": ("ankle boot", "boots", "boot", "chelsea boot", "bootie", "short boot"),
}

_TEMPLATES: tuple[str, ...] = (
    "{x}",
    "a {x}",
    "a photo of a {x}",
    "an image of {x}",
    "a picture of a {x}",
    "draw a {x}",
    "generate a {x}",
    "a simple {x}",
    "a {c} {x}",
    "a {x} in {c}",
    "a product photo of a {x}",
    "a sketch of a {x}",
    "show me a {x}",
    "a stylish {x}",
    "a {t} picture of a {x}",
    "one {x} on a plain background",
)
_COLOURS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "black",
    "white",
    "pastel pink",
    "navy",
    "yellow",
    "grey",
    "beige",
)
_TONES: tuple[str, ...] = ("high contrast", "soft", "vintage", "dark", "bright", "minimalist")

# Held out from training: the evaluation's prompts, phrased as a user would.
EVAL_PROMPTS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("a t-shirt", "a plain tee"),
    "trouser": ("a pair of trousers", "some pants"),
    "pullover": ("a pullover", "a warm sweater"),
    "dress": ("a dress", "an elegant gown"),
    "coat": ("a coat", "a warm winter jacket"),
    "sandal": ("a sandal", "summer sandals"),
    "shirt": ("a shirt", "a collared button-up shirt"),
    "sneaker": ("a sneaker", "running shoes"),
    "bag": ("a bag", "a leather handbag"),
    "ankle boot": ("an ankle boot", "short leather boots"),
}


def class_index(name: str) -> int:
    """Label index of a class name (`CLASS_NAMES`)."""
    return CLASS_NAMES.index(name)


def training_captions(per_class: int = 48, seed: int = 0) -> list[list[str]]:
    """`per_class` distinct captions for each class, in label order."""
    rng = random.Random(seed)
    out: list[list[str]] = []
    for name in CLASS_NAMES:
        seen: set[str] = set()
        # Bounded: far more draws than distinct captions are needed.
        for _ in range(per_class * 50):
            if len(seen) >= per_class:
                break
            caption = rng.choice(_TEMPLATES).format(
                x=rng.choice(CLASS_SYNONYMS[name]), c=rng.choice(_COLOURS), t=rng.choice(_TONES)
            )
            seen.add(caption.replace("a a", "an a").replace("a e", "an e"))
        out.append(sorted(seen))
    return out
