"""Decode steps in native code: a small C library (skinny_linear.c beside this file).

A decode step multiplies a few rows (one per running sequence) by every weight
matrix of the model, and in torch it is also thousands of small ops. MKL's sgemm
gets near the memory bandwidth for one row but packs panels per call for a few
more: at 8 rows it measured about half the bandwidth here (2 cores). The library:

- `linear`: x W^T streaming each weight row once with a prefetch ahead, dotted with
  up to 8 rows of x while the row sits in L1 (`projections.Projection` uses it);
- `moe`: a whole shared-base MoE block in one call (`shared_experts.SharedBaseMoeBlock`);
- `attention`: a decode step's attention with its KV-cache writes in one call
  (`decode_layers.DecodeAttention`);
- `rms_norm`: a decode step's RMSNorm in one call (`decode_layers.DecodeRMSNorm`).

Every output is summed in the same order whatever the number of rows, so a
sequence's logits do not depend on what else is batched with it. Weights are fp32
or bf16 (widened to fp32 in registers: activations and sums stay fp32), or int8 with
one fp32 scale per output row (`pack_int8`: symmetric, the row's largest magnitude
maps to 127; a quarter of fp32's bytes, the dot product in fp32 scaled at its end),
or int4 in groups of 32 along each row (`pack_int4`: a scale per group, 5/8 of a byte a
weight; stored as uint8, `INT4`).

The library is compiled when the model loads (`load_kernel`: half a second with the
system's C compiler, `-march=native`, AVX2+FMA or AVX-512). Without a compiler or on
other CPUs the same modules run torch's ops instead: slower, same results to float
rounding.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from moe_svc.kernels.pack_cache import PackCache
from moe_svc.modeling.kv_cache import AttentionPlan, KVCache

__all__ = [
    "INT4",
    "MAX_ROWS",
    "MoeWeights",
    "SkinnyKernel",
    "load_kernel",
    "pack",
    "pack_int4",
    "pack_int8",
    "unpack",
    "unpack_int4",
    "unpack_int8",
]

logger = logging.getLogger("moe_svc.kernels.skinny")

SOURCE = Path(__file__).with_name("skinny_linear.c")
# rows up to which the kernels beat MKL (measured); above (prompt prefill) sgemm's
# blocking wins. One bound for every native path.
MAX_ROWS = 16
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


# bytes after each int8 row: its fp32 scale
SCALE_BYTES = 4


def pack_int8(weight: torch.Tensor) -> torch.Tensor:
    """(N, K) float -> (N, K + 4) int8: each row's values over its scale (absmax / 127),
    rounded, then the scale's fp32 bytes, the layout the kernel's int8 products read."""
    w = weight.detach().float()
    n, k = w.shape
    absmax = w.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
    packed = torch.empty(n, k + SCALE_BYTES, dtype=torch.int8)
    packed[:, :k] = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    packed[:, k:] = scale.contiguous().view(torch.int8).view(n, SCALE_BYTES)
    return packed


def unpack_int8(packed: torch.Tensor) -> torch.Tensor:
    """pack_int8's (N, K + 4) int8 -> the (N, K) fp32 weights it stands for."""
    scale = packed[:, -SCALE_BYTES:].contiguous().view(torch.float32)  # (N, 1)
    return packed[:, :-SCALE_BYTES].float() * scale


# int4 weights are stored in this dtype (packed nibbles and scales as bytes)
INT4 = torch.uint8
GROUP = 32  # int4 weights per scale, along a row


def pack_int4(weight: torch.Tensor) -> torch.Tensor:
    """(N, K) float, K a multiple of 32 -> (N, 5K/8) uint8: per group of 32 weights, 16
    bytes (weight j + 8 in the low nibble of byte j, weight j + 16 + 8 in its high
    nibble; values -8..7), then the row's K/32 fp32 scales. Each group's scale is the one,
    of 20 candidates around absmax / 7, that leaves the least squared error (clipping the
    largest weight a little often rounds the rest closer: perplexity 44.6 -> 42.4 on the
    default model against absmax alone)."""
    w = weight.detach().float()
    n, k = w.shape
    groups = w.view(n, k // GROUP, GROUP)
    absmax = groups.abs().amax(dim=2)
    best_error: torch.Tensor | None = None
    scale = torch.ones_like(absmax)
    for levels in (7.0, 8.0):
        for fraction in torch.linspace(0.55, 1.0, 10).tolist():
            candidate = torch.where(absmax > 0, absmax * fraction / levels, torch.ones_like(absmax))
            rounded = torch.round(groups / candidate[..., None]).clamp_(-8, 7)
            error = ((rounded * candidate[..., None] - groups) ** 2).sum(dim=2)
            if best_error is None:
                best_error, scale = error, candidate
            else:
                better = error < best_error
                best_error = torch.where(better, error, best_error)
                scale = torch.where(better, candidate, scale)
    q = torch.round(groups / scale[..., None]).clamp_(-8, 7).to(torch.int32) + 8
    nibbles = (q[..., :16] | (q[..., 16:] << 4)).to(torch.uint8).view(n, k // 2)
    return torch.cat([nibbles, scale.contiguous().view(torch.uint8).view(n, -1)], dim=1)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """pack_int4's (N, 5K/8) uint8 -> the (N, K) fp32 weights it stands for."""
    n, width = packed.shape
    k = width * 8 // 5
    nibbles = packed[:, : k // 2].view(n, k // GROUP, 16).to(torch.int32)
    q = torch.cat([nibbles & 15, nibbles >> 4], dim=2) - 8  # (N, G, 32)
    scale = packed[:, k // 2 :].contiguous().view(torch.float32).view(n, k // GROUP, 1)
    return (q.float() * scale).view(n, k)


def pack(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float (N, K) weight in the layout the kernel's `dtype` products read."""
    if dtype == torch.int8:
        return pack_int8(weight)
    if dtype == INT4:
        return pack_int4(weight)
    return weight.detach().to(dtype).contiguous()


def unpack(weight: torch.Tensor) -> torch.Tensor:
    """A stored weight as the float (N, K) it stands for."""
    if weight.dtype == torch.int8:
        return unpack_int8(weight)
    if weight.dtype == INT4:
        return unpack_int4(weight)
    return weight


def in_features(weight: torch.Tensor) -> int:
    """K of a stored weight (its packed rows hold more bytes than weights)."""
    if weight.dtype == torch.int8:
        return weight.shape[1] - SCALE_BYTES
    if weight.dtype == INT4:
        return weight.shape[1] * 8 // 5
    return weight.shape[1]


class SkinnyKernel:
    """The compiled kernel: `linear(x, w)` = x @ w^T for fp32 x (M, K), w (N, K).

    weight_dtype: how Projections store their weights for it, fp32, bf16 (half the
    bytes read per step; widened to fp32 in registers, sums in fp32), int8
    (`pack_int8`'s rows with their scale: about a quarter) or INT4 (`pack_int4`).
    """

    def __init__(self, lib: ctypes.CDLL, weight_dtype: torch.dtype = torch.float32) -> None:
        argtypes: list[type[ctypes.c_void_p | ctypes.c_int64 | ctypes.c_int]] = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        p, n = ctypes.c_void_p, ctypes.c_int64
        self._fns = {
            torch.float32: lib.skinny_linear,
            torch.bfloat16: lib.skinny_linear_bf16,
            torch.int8: lib.skinny_linear_i8,
            INT4: lib.skinny_linear_i4,
        }
        for fn in self._fns.values():
            fn.argtypes = argtypes
            fn.restype = None
        self._attention_fns = {
            torch.float32: lib.skinny_attention,
            torch.bfloat16: lib.skinny_attention_bf16,
            torch.int8: lib.skinny_attention_i8,
            INT4: lib.skinny_attention_i4,
        }
        for fn in self._attention_fns.values():
            # x M C wqkv wo nh nkv hd cos sin kc vc row_stride head_stride
            # slots valid valid_stride kv_len out scratch threads
            fn.argtypes = [p, n, n, p, p, n, n, n, p, p, p, p, n, n]
            fn.argtypes += [p, p, n, n, p, p, ctypes.c_int]
            fn.restype = None
        self._rms_norm = lib.skinny_rms_norm
        self._rms_norm.argtypes = [p, n, n, p, ctypes.c_float, p]
        self._rms_norm.restype = None
        self._moe_fns = {
            torch.float32: lib.skinny_moe,
            torch.bfloat16: lib.skinny_moe_bf16,
            torch.int8: lib.skinny_moe_i8,
            INT4: lib.skinny_moe_i4,
        }
        for fn in self._moe_fns.values():
            # x M C gate E k gu I gu_a gu_bt r_gu dn dn_a dn_bt r_dn
            # out logits selected weights scratch threads
            fn.argtypes = [p, n, n, p, n, n, p, n, p, p, n, p, p, p, n, p, p, p, p, p, ctypes.c_int]
            fn.restype = None
        self.vector_width = int(lib.skinny_vector_width())
        self.weight_dtype = weight_dtype
        # int8/int4 packs kept in the model directory (`pack_cache`), set by the loader
        self.pack_cache: PackCache | None = None

    def supports(self, weight: torch.Tensor) -> bool:
        return (
            weight.dim() == 2
            and weight.dtype in (torch.float32, torch.bfloat16)
            and weight.device.type == "cpu"
            and weight.shape[1] % (GROUP if self.weight_dtype == INT4 else self.vector_width) == 0
        )

    def store(self, weight: torch.Tensor) -> torch.Tensor:
        """A float (N, K) weight in the layout its products read: weight_dtype, contiguous;
        int8 rows packed with their scales."""
        if self.pack_cache is not None and self.weight_dtype in (torch.int8, INT4):
            return self.pack_cache.pack(weight, lambda w: pack(w, self.weight_dtype))
        return pack(weight, self.weight_dtype)

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (M, K) fp32, weight (N, K) contiguous fp32 or bf16, or packed (`pack`)
        -> (M, N) fp32."""
        x = x.contiguous()
        M, K = x.shape
        N = weight.shape[0]
        assert in_features(weight) == K
        out = torch.empty(M, N, dtype=torch.float32)
        # the calling thread's torch thread count: the kernel's OpenMP team is torch's
        threads = torch.get_num_threads()
        fn = self._fns[weight.dtype]
        fn(x.data_ptr(), M, K, weight.data_ptr(), N, out.data_ptr(), threads)
        return out

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """RMSNorm over the last dim of fp32 x with fp32 weight (C,): one call, not ~10 ops."""
        x = x.contiguous()
        C = x.shape[-1]
        out = torch.empty_like(x)
        self._rms_norm(x.data_ptr(), x.numel() // C, C, weight.data_ptr(), eps, out.data_ptr())
        return out

    def moe(
        self, x: torch.Tensor, weights: MoeWeights
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A shared-base MoE block on x (M, C) fp32 in one call.

        Returns the block's output (M, C), router logits (M, E) and the experts
        chosen (M, k), as SharedBaseMoeBlock's torch path computes them.
        """
        x = x.contiguous()
        M, C = x.shape
        E, k, inner = weights.gate.shape[0], weights.top_k, weights.gate_up.shape[0] // 2
        r_gu = 0 if weights.gate_up_bt is None else weights.gate_up_bt.shape[1]
        r_dn = 0 if weights.down_bt is None else weights.down_bt.shape[1]
        out = torch.empty(M, C, dtype=torch.float32)
        logits = torch.empty(M, E, dtype=torch.float32)
        selected = torch.empty(M, k, dtype=torch.long)
        routing = torch.empty(M, k, dtype=torch.float32)
        scratch = torch.empty(M * (3 * inner + E * r_gu + 3 * k * inner + k * r_dn))
        self._moe_fns[weights.gate.dtype](
            x.data_ptr(),
            M,
            C,
            weights.gate.data_ptr(),
            E,
            k,
            weights.gate_up.data_ptr(),
            inner,
            _pointer(weights.gate_up_a),
            _pointer(weights.gate_up_bt),
            r_gu,
            weights.down.data_ptr(),
            _pointer(weights.down_a),
            _pointer(weights.down_bt),
            r_dn,
            out.data_ptr(),
            logits.data_ptr(),
            selected.data_ptr(),
            routing.data_ptr(),
            scratch.data_ptr(),
            torch.get_num_threads(),
        )
        return out, logits, selected

    def attention(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        plan: AttentionPlan,
        cache: KVCache,
        layer_idx: int,
        heads: tuple[int, int, int],
        qkv_weight: torch.Tensor,
        o_weight: torch.Tensor,
    ) -> torch.Tensor:
        """One decode step of an attention layer (x (B, 1, C) fp32): its output (B, 1, C).

        heads: (query heads, key/value heads, head size); qkv_weight the stacked
        q, k, v projections ((nh + 2 nkv) hd, C), o_weight (C, nh hd). Writes the
        step's keys and values into `cache` at the plan's slots, as Attention does.
        """
        B, _, C = x.shape
        assert plan.slots is not None
        nh, nkv, hd = heads
        keys, values = cache.keys[layer_idx], cache.values[layer_idx]
        kv_len = plan.kv_len
        cos, sin = (r.reshape(B, hd).contiguous() for r in rope)
        slots = plan.slots[:, 0].contiguous()
        x = x.reshape(B, C).contiguous()
        out = torch.empty(B, C, dtype=torch.float32)
        scratch = torch.empty(B * ((nh + 2 * nkv) * hd + nh * hd + nh * kv_len))
        self._attention_fns[qkv_weight.dtype](
            x.data_ptr(),
            B,
            C,
            qkv_weight.data_ptr(),
            o_weight.data_ptr(),
            nh,
            nkv,
            hd,
            cos.data_ptr(),
            sin.data_ptr(),
            keys.data_ptr(),
            values.data_ptr(),
            keys.stride(0),
            keys.stride(1),
            slots.data_ptr(),
            cache.valid.data_ptr(),
            cache.valid.stride(0),
            kv_len,
            out.data_ptr(),
            scratch.data_ptr(),
            torch.get_num_threads(),
        )
        return out.view(B, 1, C)


@dataclass(frozen=True)
class MoeWeights:
    """A shared-base MoE block's weights as `SkinnyKernel.moe` reads them (one dtype).

    Row-major (out, in) like nn.Linear, except the B factors: per expert, transposed
    (E, r, out), so that adding B_e a is a run of contiguous axpys. int8: every row
    packed with its scale (`pack_int8`), the B factors' rows included.
    """

    gate: torch.Tensor  # (E, C) router
    gate_up: torch.Tensor  # (2I, C) shared gate and up projections
    down: torch.Tensor  # (C, I) shared down projection
    top_k: int
    gate_up_a: torch.Tensor | None = None  # (E*r, C)
    gate_up_bt: torch.Tensor | None = None  # (E, r, 2I)
    down_a: torch.Tensor | None = None  # (E*r, I)
    down_bt: torch.Tensor | None = None  # (E, r, C)


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _openmp_runtimes() -> set[str]:
    """Paths of the OpenMP runtimes mapped into this process (Linux; empty elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    names = ("libgomp", "libiomp", "libomp.")
    return {line.split()[-1] for line in maps.splitlines() if any(n in line for n in names)}


def load_kernel(
    weight_dtype: torch.dtype = torch.float32, extra_flags: tuple[str, ...] = ()
) -> SkinnyKernel | None:
    """Compile and load the kernel; None (logged with the reason) where it cannot run.

    The C compiler is $CC, else `cc`/`gcc` on PATH; extra_flags go after -march=native
    (tests build the AVX2 variant with "-mno-avx512f"). The library is built in a
    temporary directory and stays mapped after the directory goes.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        logger.warning(
            "no C compiler: decode steps use torch's matmul (install gcc for the faster kernel)"
        )
        return None
    runtimes_before = _openmp_runtimes()
    with tempfile.TemporaryDirectory(prefix="moe-kernel-") as tmp:
        library = Path(tmp) / "skinny_linear.so"
        try:
            done = subprocess.run(
                [compiler, *_FLAGS, *extra_flags, str(SOURCE), "-o", str(library)],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.warning("decode kernel not compiled: %s; using torch's matmul", exc)
            return None
        if done.returncode != 0:
            logger.warning(
                "decode kernel not compiled (needs AVX2+FMA or AVX-512 and OpenMP); "
                "using torch's matmul",
                extra={"compiler": compiler, "stderr": done.stderr.strip()[-800:]},
            )
            return None
        kernel = SkinnyKernel(ctypes.CDLL(str(library)), weight_dtype)
    runtimes = _openmp_runtimes()
    if runtimes_before and runtimes != runtimes_before:
        # a second OpenMP runtime means a second thread team fighting torch's for the cores
        logger.warning(
            "decode kernel linked a different OpenMP runtime than torch's; using torch's matmul",
            extra={"runtimes": sorted(runtimes)},
        )
        return None
    if not _agrees_with_torch(kernel):
        logger.warning("decode kernel disagrees with torch's matmul; using torch's matmul")
        return None
    logger.info(
        "decode kernel loaded",
        extra={"vector_width": kernel.vector_width, "weights": str(weight_dtype)},
    )
    return kernel


def _agrees_with_torch(kernel: SkinnyKernel) -> bool:
    generator = torch.Generator().manual_seed(0)
    K = 4 * kernel.vector_width
    x = torch.randn(11, K, generator=generator)
    w = torch.randn(300, K, generator=generator)
    half = w.bfloat16()
    agrees = all(
        torch.allclose(kernel.linear(x, weight), F.linear(x, weight.float()), rtol=1e-4, atol=1e-4)
        for weight in (w, half)
    )
    return agrees and all(
        torch.allclose(kernel.linear(x, packed), F.linear(x, unpack(packed)), rtol=1e-4, atol=1e-4)
        for packed in (pack_int8(w), pack_int4(w))
    )
