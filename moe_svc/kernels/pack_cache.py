"""Quantised weights kept in the model directory: int8/int4 packing runs once per model.

`load_model(path, "int8")` packs every weight the kernel's products read (`skinny.pack`)
as `install_backend` builds the serving modules. The first start writes what it packed
to `<model>/quantized/<dtype>.safetensors`; later starts read it back instead of
quantising again. The packs are kept in the order the modules ask for them, each with
its shape and a fingerprint of the float weight it came from; the file is used only
while the model's own files are unchanged (their sizes and modification times), and a
weight whose fingerprint differs is packed afresh (and the file rewritten).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from common.files import fsync_dir

__all__ = ["PackCache", "source_of"]

logger = logging.getLogger("moe_svc.kernels.pack_cache")


def source_of(model_dir: Path) -> str:
    """What the packs depend on: the model's weight and config files, by size and mtime."""
    parts = []
    for file in [*sorted(model_dir.glob("*.safetensors")), model_dir / "config.json"]:
        if file.exists():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fingerprint(weight: torch.Tensor) -> str:
    """Shape and a strided sample's sum: tells a different weight apart, cheaply."""
    flat = weight.detach().reshape(-1)
    step = max(1, flat.numel() // 4096)
    return f"{tuple(weight.shape)}:{float(flat[::step].double().sum()):.12e}"


class PackCache:
    """Packs of one model and weight type, read from and written to `file`."""

    def __init__(self, file: Path, source: str, dtype: torch.dtype) -> None:
        self.file = file
        self.source = source
        self.dtype = dtype
        self._stored: dict[str, torch.Tensor] = {}
        self._fingerprints: dict[str, str] = {}
        self._packed: dict[str, torch.Tensor] = {}
        self._order = 0
        self.reused = self.packed = 0
        if file.exists():
            try:
                with safe_open(str(file), framework="pt") as stored:
                    meta = stored.metadata() or {}
                    if meta.get("source") == source and meta.get("dtype") == str(dtype):
                        self._fingerprints = json.loads(meta.get("fingerprints", "{}"))
                        names = stored.keys()  # safe_open is not iterable
                        self._stored = {k: stored.get_tensor(k) for k in names}
            except (OSError, ValueError, json.JSONDecodeError) as exc:
                logger.warning(
                    "quantised weights unreadable; packing again", extra={"error": str(exc)}
                )

    def pack(
        self, weight: torch.Tensor, packer: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The packed form of `weight` (the next module's): stored, or packed now."""
        key = str(self._order)
        self._order += 1
        fingerprint = _fingerprint(weight)
        stored = self._stored.get(key)
        if stored is not None and self._fingerprints.get(key) == fingerprint:
            self.reused += 1
            packed = stored
        else:
            self.packed += 1
            packed = packer(weight)
        self._packed[key] = packed
        self._fingerprints[key] = fingerprint
        return packed

    def save(self) -> None:
        """Write the packs when any was made now (atomically; a failure is logged)."""
        if not self.packed:
            return
        meta = {
            "source": self.source,
            "dtype": str(self.dtype),
            "fingerprints": json.dumps(self._fingerprints),
        }
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in self._packed.items()}, str(tmp), meta)
            os.replace(tmp, self.file)
            fsync_dir(self.file.parent)
        except OSError as exc:
            logger.warning(
                "quantised weights not stored; the next start packs them again",
                extra={"file": str(self.file), "error": str(exc)},
            )
