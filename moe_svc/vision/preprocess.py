"""Any picture -> the (1, 28, 28) tensor the vision encoder reads, framed like Fashion-MNIST.

Fashion-MNIST's images were made by trimming a product photo to the garment,
scaling its longest side to 28 pixels and centring it, light garment on black.
`to_model_input` repeats that recipe on whatever a user sends: grayscale, a
bright border taken for a white background (so inverted), contrast stretched
(a navy garment turns dim once grayscale), trimmed to what differs from the
background, padded to a square, then resized.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["IMAGE_SIZE", "to_model_input"]

IMAGE_SIZE = 28
# A pixel counts as garment when it is this much brighter than black (0-255, after
# the contrast stretch): below it lie JPEG noise and a faded background.
_INK_THRESHOLD = 40


def _grayscale(image: Image.Image) -> Image.Image:
    """L mode; transparency becomes white, a background the inversion then handles."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image.convert("L")


def _border_is_bright(pixels: np.ndarray) -> bool:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(np.median(border)) > 127


def _trim(image: Image.Image) -> Image.Image:
    """The bounding box of the garment; the whole image when nothing stands out."""
    box = image.point(lambda v: 255 if v > _INK_THRESHOLD else 0).getbbox()
    return image.crop(box) if box is not None else image


def _pad_square(image: Image.Image) -> Image.Image:
    side = max(image.size)
    square = Image.new("L", (side, side), 0)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def to_model_input(image: Image.Image) -> torch.Tensor:
    """A picture of any mode and size -> (1, 28, 28) float32 in [-1, 1], garment light on black."""
    gray = _grayscale(image)
    if _border_is_bright(np.asarray(gray)):
        gray = ImageOps.invert(gray)
    gray = _pad_square(_trim(ImageOps.autocontrast(gray)))
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    array = np.asarray(gray, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.copy())[None]
