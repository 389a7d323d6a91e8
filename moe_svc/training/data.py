"""Token data for training: tokenizers, text and token files, random training windows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "TokenData",
    "Tokenizer",
    "load_tokenizer",
    "read_tokens",
]

TEXT_SUFFIXES = {".txt", ".md", ".text", ".jsonl", ".json", ".csv", ".html", ".py", ""}


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255: needs no files, pairs with the tiny presets."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face `tokenizer.json` through the `tokenizers` library."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self._tokenizer = _Tokenizer.from_file(str(path))
        self.vocab_size = self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids)))


def load_tokenizer(spec: str, model_dir: Path | None) -> Tokenizer:
    """`bytes`, a path to tokenizer.json, or `auto`: the model directory's tokenizer.json if
    there is one, else bytes."""
    if spec == "bytes":
        return ByteTokenizer()
    if spec == "auto":
        if model_dir is not None and (model_dir / "tokenizer.json").exists():
            return HFTokenizer(model_dir / "tokenizer.json")
        return ByteTokenizer()
    return HFTokenizer(spec)


def read_tokens(
    paths: Sequence[Path],
    tokenizer: Tokenizer,
    token_dtype: str = "uint16",
    separator: int | None = None,
) -> np.ndarray:
    """All files as one int64 token stream.

    `.npy` files hold token ids; `.bin` files raw ids of `token_dtype` (nanoGPT's
    format); anything else is UTF-8 text for the tokenizer. `separator` (an EOS id)
    goes between documents so the model sees where one ends.
    """
    parts: list[np.ndarray] = []
    for path in paths:
        if path.suffix == ".npy":
            ids = np.load(path).reshape(-1)
        elif path.suffix == ".bin":
            ids = np.fromfile(path, dtype=np.dtype(token_dtype))
        else:
            ids = np.asarray(tokenizer.encode(path.read_text(encoding="utf-8")))
        parts.append(ids.astype(np.int64))
        if separator is not None:
            parts.append(np.asarray([separator], dtype=np.int64))
    if not parts:
        raise ValueError("no data files given")
    return np.concatenate(parts)


class TokenData:
    """A token stream split into training and validation parts, served as (x, y) windows."""

    def __init__(self, tokens: np.ndarray, seq_len: int, val_fraction: float) -> None:
        n_val = int(len(tokens) * val_fraction)
        if n_val and n_val < seq_len + 1:
            n_val = seq_len + 1  # at least one full validation window
        self.train = torch.from_numpy(tokens[: len(tokens) - n_val].copy())
        self.val = torch.from_numpy(tokens[len(tokens) - n_val :].copy())
        self.seq_len = seq_len
        if len(self.train) < seq_len + 1:
            raise ValueError(f"{len(self.train)} training tokens: fewer than seq_len + 1")

    def max_token(self) -> int:
        return int(max(self.train.max(), self.val.max() if len(self.val) else 0))

    def train_batch(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: x (B, T) and the next tokens y (B, T)."""
        starts = torch.randint(
            0, len(self.train) - self.seq_len, (batch_size,), generator=generator
        )
        return self._windows(self.train, starts)

    def val_batches(
        self, batch_size: int, max_batches: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed, evenly spaced validation windows, the same at every evaluation."""
        if len(self.val) < self.seq_len + 1:
            return []
        span = len(self.val) - self.seq_len
        count = min(max_batches * batch_size, max(1, span // self.seq_len))
        starts = torch.linspace(0, span - 1, count).long()
        return [self._windows(self.val, chunk) for chunk in torch.split(starts, batch_size)]

    def _windows(
        self, data: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.arange(self.seq_len + 1)
        windows = data[starts[:, None] + offsets]  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]
