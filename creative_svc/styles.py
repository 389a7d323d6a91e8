"""Colour and tone presets read from the prompt, applied to a generated grayscale image.

"a red sneaker" -> colour red; "a dress in pastel blue" -> pastel blue;
"high contrast" -> a steeper tone curve. The words are removed from the text
that conditions the generator (the models were trained on grayscale images),
and the style is applied afterwards: the garment is tinted with the colour,
the background stays black (Fashion-MNIST's), or white with "white background".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["COLOURS", "TONES", "Style", "apply_style", "parse_style"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "crimson": (180, 20, 50),
    "orange": (245, 140, 30),
    "yellow": (245, 215, 40),
    "gold": (212, 175, 55),
    "green": (50, 170, 70),
    "olive": (128, 128, 40),
    "teal": (30, 140, 140),
    "turquoise": (60, 210, 200),
    "blue": (45, 95, 220),
    "navy": (25, 40, 120),
    "purple": (130, 60, 180),
    "violet": (150, 90, 210),
    "lavender": (180, 160, 230),
    "pink": (240, 120, 170),
    "magenta": (220, 40, 180),
    "brown": (130, 80, 40),
    "beige": (225, 205, 165),
    "grey": (150, 150, 150),
    "gray": (150, 150, 150),
    "silver": (200, 200, 210),
    "black": (45, 45, 45),
    "white": (250, 250, 250),
}
# Tones: a word or phrase -> what it changes. Longer phrases are matched first.
TONES: tuple[str, ...] = (
    "high contrast",
    "low contrast",
    "pastel",
    "dark",
    "light",
    "bright",
    "muted",
    "vintage",
    "sepia",
    "neon",
    "soft",
    "white background",
    "inverted",
)
_TONE_ALIASES = {"high-contrast": "high contrast", "low-contrast": "low contrast", "faded": "muted"}
_ALL_WORDS = sorted(
    [*COLOURS, *TONES, *_TONE_ALIASES], key=lambda w: (-len(w), w)
)  # longest first, so "high contrast" wins over a bare "high"
_PATTERN = re.compile(r"\b(" + "|".join(re.escape(w) for w in _ALL_WORDS) + r")\b", re.IGNORECASE)
# Connectives left dangling once a style word is cut out ("a dress in blue" -> "a dress").
_DANGLING = re.compile(r"\b(in|with|on|and|a|an|of|colou?red)\s*$|^\s*(in|with|and)\b", re.I)


@dataclass(frozen=True)
class Style:
    colour: str | None = None
    tones: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        return " ".join([*self.tones, *([self.colour] if self.colour else [])]) or "grayscale"


def parse_style(prompt: str) -> tuple[Style, str]:
    """(style, the prompt without its style words). The first colour named wins."""
    colour: str | None = None
    tones: list[str] = []
    for match in _PATTERN.finditer(prompt):
        word = match.group(1).lower()
        word = _TONE_ALIASES.get(word, word)
        if word in COLOURS:
            colour = colour or word
        elif word not in tones:
            tones.append(word)
    rest = _PATTERN.sub(" ", prompt)
    rest = re.sub(r"\b(colou?r|tones?|style|background)\b", " ", rest, flags=re.I)
    rest = re.sub(r"[\s,;]+", " ", rest).strip(" ,.;-")
    # Two passes: "in a" leaves "in" dangling once "a" is gone.
    for _ in range(2):
        rest = _DANGLING.sub("", rest).strip(" ,.;-")
    return Style(colour, tuple(tones)), rest


def _tone_curve(v: np.ndarray, tones: tuple[str, ...]) -> np.ndarray:
    """Intensity (H, W) in [0, 1] -> adjusted intensity, per tone."""
    if "high contrast" in tones:
        v = np.clip((v - 0.5) * 1.8 + 0.5, 0, 1)
    if "low contrast" in tones or "muted" in tones or "soft" in tones:
        v = 0.25 + 0.6 * v
    if "dark" in tones:
        v = v**1.8
    if "light" in tones or "bright" in tones:
        v = v**0.55
    return v


def apply_style(gray: np.ndarray, style: Style, size: int) -> Image.Image:
    """Grayscale (H, W) in [0, 1] (garment bright on black) -> styled RGB image of `size` px."""
    v = _tone_curve(np.clip(gray.astype(np.float32), 0, 1), style.tones)
    colour = np.array(COLOURS.get(style.colour or "", (255, 255, 255)), np.float32) / 255
    if "pastel" in style.tones:
        colour = 0.45 * colour + 0.55  # towards white
    if "sepia" in style.tones or "vintage" in style.tones:
        colour = colour * np.array([1.0, 0.85, 0.62], np.float32)
    if "neon" in style.tones:
        colour = colour / max(float(colour.max()), 1e-6)  # fully saturated
    rgb = v[..., None] * colour  # (H, W, 3): the garment takes the colour, black stays black
    if "inverted" in style.tones:
        rgb = 1.0 - rgb
    elif "white background" in style.tones:
        # Keep the garment's colour and shading, turn the empty background white.
        background = (1.0 - np.clip(v * 3, 0, 1))[..., None]
        rgb = rgb + background * (1.0 - rgb)
    if "vintage" in style.tones:
        rgb = 0.85 * rgb + 0.08  # faded blacks
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), "RGB")
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    if "neon" in style.tones:
        glow = image.filter(ImageFilter.GaussianBlur(size / 64))
        image = Image.blend(image, glow, 0.35)
    return image
