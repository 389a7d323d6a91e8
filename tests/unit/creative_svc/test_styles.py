"""Style presets read from prompts and applied to grayscale images."""

from __future__ import annotations

import numpy as np
import pytest

from creative_svc.styles import Style, apply_style, parse_style


@pytest.mark.parametrize(
    ("prompt", "colour", "tones", "subject"),
    [
        ("a red sneaker", "red", (), "a sneaker"),
        ("a dress in pastel blue", "blue", ("pastel",), "a dress"),
        ("high contrast ankle boot", None, ("high contrast",), "ankle boot"),
        (
            "A coat, high-contrast, on a white background",
            None,
            ("high contrast", "white background"),
            "A coat",
        ),
        ("a bag", None, (), "a bag"),
        ("navy trousers with red stripes", "navy", (), "trousers with stripes"),
    ],
)
def test_parse_style_takes_colour_and_tone_out_of_the_subject(
    prompt: str, colour: str | None, tones: tuple[str, ...], subject: str
) -> None:
    style, rest = parse_style(prompt)
    assert style.colour == colour
    assert style.tones == tones
    assert rest == subject


def test_a_prompt_of_only_style_words_leaves_no_subject() -> None:
    style, rest = parse_style("in pastel blue")
    assert rest == ""
    assert style.describe() == "pastel blue"


def _garment() -> np.ndarray:
    gray = np.zeros((28, 28), np.float32)
    gray[6:22, 9:19] = np.linspace(0.3, 1.0, 10)[None, :]  # a shaded block on black
    return gray


def test_plain_style_stays_gray_and_is_upscaled() -> None:
    image = apply_style(_garment(), Style(), 256)
    assert image.size == (256, 256) and image.mode == "RGB"
    rgb = np.asarray(image).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1  # no tint


def test_colour_tints_the_garment_and_keeps_the_background_black() -> None:
    rgb = np.asarray(apply_style(_garment(), Style(colour="red"), 256)).astype(int)
    garment = rgb[120:140, 130:150]
    assert garment[..., 0].mean() > 2 * garment[..., 2].mean()
    assert rgb[:20, :20].max() == 0


def test_pastel_is_lighter_and_high_contrast_is_wider_than_plain() -> None:
    plain = np.asarray(apply_style(_garment(), Style(colour="blue"), 256)).astype(float)
    pastel = np.asarray(apply_style(_garment(), Style("blue", ("pastel",)), 256)).astype(float)
    assert pastel[100:160, 100:160].mean() > plain[100:160, 100:160].mean()
    gray = np.asarray(apply_style(_garment(), Style(), 256).convert("L")).astype(float)
    contrast = np.asarray(
        apply_style(_garment(), Style(tones=("high contrast",)), 256).convert("L")
    ).astype(float)
    inside = slice(70, 180), slice(90, 170)
    assert contrast[inside].std() > gray[inside].std()


def test_white_background_turns_the_empty_area_white() -> None:
    rgb = np.asarray(apply_style(_garment(), Style(tones=("white background",)), 512))
    assert rgb.shape == (512, 512, 3)
    assert rgb[:40, :40].min() == 255
