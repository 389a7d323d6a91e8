"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (training and evaluation only).

The service never reads the dataset at run time: it serves committed weights.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["DATASET_DIR", "load_split"]

DATASET_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(split: str, directory: Path = DATASET_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, 28, 28) float32 in [-1, 1], labels (N,) int64) of `train` or `test`."""
    images_file, labels_file = _FILES[split]
    if not (directory / images_file).exists():
        raise FileNotFoundError(
            f"Fashion-MNIST is not at {directory}: `apt-get install -y dataset-fashion-mnist`"
        )
    images = torch.from_numpy(_read_idx(directory / images_file).copy()).float()
    labels = torch.from_numpy(_read_idx(directory / labels_file).astype(np.int64))
    return (images / 127.5 - 1.0).unsqueeze(1), labels
