"""The native decode kernel: equals torch's product, row results independent of the batch,
the modules fall back to torch where it cannot run, and a model served with it decodes the same."""

from __future__ import annotations

import asyncio
import copy
import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from moe_svc.engine import Engine, EngineConfig, GenerationRequest, SamplingParams
from moe_svc.kernels.decode_layers import DecodeAttention, DecodeRMSNorm
from moe_svc.kernels.projections import Projection
from moe_svc.kernels.shared_experts import SharedBaseMoeBlock, convert_experts
from moe_svc.kernels.skinny import (
    INT4,
    MAX_ROWS,
    SkinnyKernel,
    load_kernel,
    pack_int4,
    pack_int8,
    unpack_int4,
    unpack_int8,
)
from moe_svc.loader import load_model
from moe_svc.modeling import CausalLM, ModelConfig
from moe_svc.modeling.layers import RMSNorm
from tests.helpers.moe_blocks import moe_blocks
from tests.helpers.tiny_llm import make_tiny_llm


@pytest.fixture(scope="module")
def kernel() -> SkinnyKernel:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: serving falls back to torch's matmul")
    loaded = load_kernel()
    assert loaded is not None, "a C compiler is present but the kernel did not load (see log)"
    return loaded


@pytest.mark.parametrize("rows", [1, 2, 7, 8, 9, 16, 17, MAX_ROWS])
@pytest.mark.parametrize("n_out", [8, 3000])  # one thread / the OpenMP team
def test_products_equal_torch(kernel: SkinnyKernel, rows: int, n_out: int) -> None:
    generator = torch.Generator().manual_seed(rows * n_out)
    K = 36 * kernel.vector_width
    x = torch.randn(rows, K, generator=generator)
    w = torch.randn(n_out, K, generator=generator)
    torch.testing.assert_close(kernel.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_the_avx2_variant_equals_torch_too(kernel: SkinnyKernel) -> None:
    avx2 = load_kernel(extra_flags=("-mno-avx512f",))  # CPUs without AVX-512
    assert avx2 is not None and avx2.vector_width == 8
    x, w = torch.randn(11, 8 * 9), torch.randn(3000, 8 * 9)
    torch.testing.assert_close(avx2.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-4)
    half = w.bfloat16()
    torch.testing.assert_close(
        avx2.linear(x, half), F.linear(x, half.float()), rtol=1e-5, atol=1e-4
    )


def test_a_rows_result_does_not_depend_on_the_rows_beside_it(kernel: SkinnyKernel) -> None:
    generator = torch.Generator().manual_seed(1)
    K = 12 * kernel.vector_width
    x = torch.randn(13, K, generator=generator)  # two blocks of rows: 8 and 5
    w = torch.randn(2000, K, generator=generator)
    together = kernel.linear(x, w)
    for i in range(13):
        assert torch.equal(kernel.linear(x[i : i + 1], w), together[i : i + 1])


def test_a_strided_input_is_read_as_its_values(kernel: SkinnyKernel) -> None:
    K = 4 * kernel.vector_width
    x = torch.randn(3, 5, K)[:, -1]  # the last position of each row: not contiguous
    w = torch.randn(64, K)
    torch.testing.assert_close(Projection(w, kernel)(x), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_projection_falls_back_to_torch_where_the_kernel_does_not_apply(
    kernel: SkinnyKernel,
) -> None:
    K = 2 * kernel.vector_width
    w = torch.randn(40, K)
    many = torch.randn(MAX_ROWS + 5, K)  # a prompt prefill: sgemm's blocking is faster
    torch.testing.assert_close(Projection(w, kernel)(many), F.linear(many, w))
    odd = torch.randn(40, K + 3)  # not a whole number of vectors: kept for MKL, transposed
    projection = Projection(odd, kernel)
    assert projection.kernel is None and projection.weight_t is not None
    x = torch.randn(2, K + 3)
    torch.testing.assert_close(projection(x), F.linear(x, odd))


def test_bf16_weights_are_widened_and_summed_in_fp32(kernel: SkinnyKernel) -> None:
    generator = torch.Generator().manual_seed(2)
    K = 24 * kernel.vector_width
    x = torch.randn(13, K, generator=generator)
    w = torch.randn(3000, K, generator=generator).bfloat16()
    exact = F.linear(x, w.float())  # the bf16 weights' own values, fp32 products
    torch.testing.assert_close(kernel.linear(x, w), exact, rtol=1e-5, atol=1e-4)
    for i in (0, 12):
        assert torch.equal(kernel.linear(x[i : i + 1], w), kernel.linear(x, w)[i : i + 1])
    half = load_kernel(torch.bfloat16)
    assert half is not None
    projection = Projection(w.float(), half)  # stores its weight in bf16
    assert projection.weight is not None and projection.weight.dtype == torch.bfloat16
    torch.testing.assert_close(projection(x), exact, rtol=1e-5, atol=1e-4)
    many = torch.randn(MAX_ROWS + 1, K, generator=generator)  # prefill: torch, widened
    torch.testing.assert_close(projection(many), F.linear(many, w.float()))


def test_int4_groups_keep_their_scale_and_are_summed_in_fp32(kernel: SkinnyKernel) -> None:
    generator = torch.Generator().manual_seed(8)
    K = 24 * kernel.vector_width
    x = torch.randn(13, K, generator=generator)
    w = torch.randn(3000, K, generator=generator) * torch.rand(3000, K // 32, 1).repeat_interleave(
        32, 1
    ).view(3000, K)
    w[5] = 0.0
    packed = pack_int4(w)
    assert packed.dtype == INT4 and packed.shape == (3000, K // 2 + K // 32 * 4)
    groups = w.view(3000, -1, 32)
    plain = (groups.abs().amax(2, keepdim=True) / 7).clamp_min(1e-30)  # absmax / 7
    absmax_rounding = torch.round(groups / plain).clamp(-8, 7) * plain
    # each group's scale is chosen for the least squared error: never worse than absmax / 7
    error = ((unpack_int4(packed).view(3000, -1, 32) - groups) ** 2).sum(2)
    assert bool((error <= ((absmax_rounding - groups) ** 2).sum(2) + 1e-6).all())
    exact = F.linear(x, unpack_int4(packed))
    torch.testing.assert_close(kernel.linear(x, packed), exact, rtol=1e-5, atol=1e-4)
    assert not bool(kernel.linear(x, packed)[:, 5].any())
    for i in (0, 12):
        assert torch.equal(kernel.linear(x[i : i + 1], packed), kernel.linear(x, packed)[i : i + 1])
    int4 = load_kernel(INT4)
    assert int4 is not None
    projection = Projection(w, int4)
    assert projection.weight is not None and projection.weight.dtype == INT4
    torch.testing.assert_close(projection(x), exact, rtol=1e-5, atol=1e-4)
    many = torch.randn(MAX_ROWS + 1, K, generator=generator)
    torch.testing.assert_close(projection(many), F.linear(many, unpack_int4(packed)))


def test_int8_rows_keep_their_scale_and_are_summed_in_fp32(kernel: SkinnyKernel) -> None:
    generator = torch.Generator().manual_seed(7)
    K = 24 * kernel.vector_width
    x = torch.randn(13, K, generator=generator)
    w = torch.randn(3000, K, generator=generator) * torch.rand(3000, 1, generator=generator)
    w[5] = 0.0  # a row of zeros packs and multiplies as zeros
    packed = pack_int8(w)
    assert packed.dtype == torch.int8 and packed.shape == (3000, K + 4)
    scale = w.abs().amax(1, keepdim=True) / 127
    # each weight within half a step of its row's scale: no more than rounding lost
    assert bool(((unpack_int8(packed) - w).abs() <= scale / 2 + 1e-7).all())
    exact = F.linear(x, unpack_int8(packed))  # the int8 weights' own values, fp32 products
    torch.testing.assert_close(kernel.linear(x, packed), exact, rtol=1e-5, atol=1e-4)
    assert not bool(kernel.linear(x, packed)[:, 5].any())
    for i in (0, 12):
        assert torch.equal(kernel.linear(x[i : i + 1], packed), kernel.linear(x, packed)[i : i + 1])
    int8 = load_kernel(torch.int8)
    assert int8 is not None
    projection = Projection(w, int8)  # packs its weight
    assert projection.weight is not None and projection.weight.dtype == torch.int8
    torch.testing.assert_close(projection(x), exact, rtol=1e-5, atol=1e-4)
    many = torch.randn(MAX_ROWS + 1, K, generator=generator)  # prefill: torch, unpacked
    torch.testing.assert_close(projection(many), F.linear(many, unpack_int8(packed)))


@pytest.mark.parametrize(
    ("dtype", "stored", "tolerance"), [("int8", torch.int8, 0.05), ("int4", INT4, None)]
)
def test_an_int8_or_int4_model_decodes_what_its_own_weights_give(
    kernel: SkinnyKernel,
    tmp_path: Path,
    dtype: str,
    stored: torch.dtype,
    tolerance: float | None,
) -> None:
    """Decode steps (native int8 products) equal a prefill over the same int8 weights
    (unpacked, torch's sgemm); int8 stays near the fp32 model. The quantisation's own
    error on the real model is bench/moe_quality.py's to measure: int4's 15 levels a
    group move this random network's logits far (its weights are larger than a trained
    model's, and every layer is as sensitive)."""
    path = make_tiny_llm(tmp_path, model_type="mixtral", seed=6, heads=(4, 2), hidden_size=64)
    int8 = load_model(path, dtype).model
    full = load_model(path, "float32").model
    weights = {
        m.weight.dtype
        for m in int8.modules()
        if isinstance(m, Projection) and m.kernel and m.weight is not None
    }
    assert weights == {stored}
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41]])
    following = torch.tensor([[7]])
    with torch.inference_mode():
        cache = int8.new_cache(1, 16)
        int8(prompt, cache=cache)
        step = int8(following, cache=cache)[0, -1]
        whole = [m(torch.cat([prompt, following], 1))[0, -1] for m in (int8, full)]
    assert step.dtype == torch.float32
    torch.testing.assert_close(step, whole[0], rtol=1e-4, atol=1e-4)
    gap = float((whole[0] - whole[1]).abs().max())
    assert gap > 0
    if tolerance is not None:
        assert gap < tolerance * float(whole[1].abs().max())


def test_a_missing_compiler_leaves_torchs_matmul(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with caplog.at_level(logging.WARNING, logger="moe_svc.kernels.skinny"):
        assert load_kernel() is None
    assert "not compiled" in caplog.text


@pytest.mark.parametrize("heads", [(6, 2), (3, 1)])  # (3, 1): native decode attention
@pytest.mark.parametrize("model_type", ["llama", "mixtral"])
def test_a_model_served_with_the_kernel_decodes_as_without(
    kernel: SkinnyKernel, tmp_path: Path, model_type: str, heads: tuple[int, int]
) -> None:
    path = make_tiny_llm(tmp_path, model_type=model_type, seed=5, heads=heads)
    fast = load_model(path, "float32").model
    plain = load_model(path, "float32", decode_kernel=False).model
    projections = [m for m in fast.modules() if isinstance(m, Projection) and m.kernel]
    assert len(projections) >= 2 * fast.config.num_hidden_layers + 1  # qkv, o, lm_head
    assert fast.lm_head.weight is fast.model.embed_tokens.weight  # still tied
    native = [
        isinstance(layer.self_attn, DecodeAttention) and layer.self_attn.decode_kernel is not None
        for layer in fast.model.layers
    ]
    assert fast.config.head_dim is not None  # set from the hidden size when not given
    assert all(native) == (fast.config.head_dim % kernel.vector_width == 0)
    # rows of different lengths (left padding): keys past a row's end stay hidden
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41], [0, 0, 8, 120, 3, 64]])
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    with torch.inference_mode():
        caches = [model.new_cache(2, 32) for model in (fast, plain)]
        ids = [prompt, prompt]
        for step in range(6):  # prefill, then decode steps of two rows
            mask = real if step == 0 else None
            logits = [
                model(x, mask, cache=cache, logits_to_keep=1)[:, -1]
                for model, x, cache in zip((fast, plain), ids, caches, strict=True)
            ]
            torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)
            next_ids = logits[1].argmax(-1, keepdim=True)
            assert torch.equal(logits[0].argmax(-1, keepdim=True), next_ids)
            ids = [next_ids, next_ids]


def test_a_bf16_model_with_the_kernel_keeps_fp32_activations(
    kernel: SkinnyKernel, tmp_path: Path
) -> None:
    path = make_tiny_llm(tmp_path, model_type="mixtral", seed=6)
    half = load_model(path, "bfloat16").model
    full = load_model(path, "float32").model
    weights = {
        m.weight.dtype
        for m in half.modules()
        if isinstance(m, Projection) and m.kernel and m.weight is not None
    }
    assert weights == {torch.bfloat16}
    assert half.model.embed_tokens.weight.dtype == torch.float32  # norms, embeddings, cache
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41]])
    with torch.inference_mode():
        logits = [model(prompt)[0, -1] for model in (half, full)]
    assert logits[0].dtype == torch.float32
    # weights rounded to bf16 (8 bits of mantissa) move the logits a little, not more
    assert 0 < float((logits[0] - logits[1]).abs().max()) < 0.05 * float(logits[1].abs().max())


def _upcycled_moe(seed: int = 0) -> CausalLM:
    """A small Mixtral whose experts are one FFN plus rank-4 deltas (sizes the kernel takes)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        model_type="mixtral",
        vocab_size=97,
        hidden_size=64,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        initializer_range=0.2,
    )
    model = CausalLM(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for block in moe_blocks(model):
            torch.nn.init.normal_(block.gate.weight, std=1.0)
            for weights in (block.experts.gate_up_proj, block.experts.down_proj):
                E, n_out, n_in = weights.shape
                weights[1:] = weights[0]
                weights[1:] += (
                    torch.randn(E - 1, n_out, 4, generator=g)
                    @ torch.randn(E - 1, 4, n_in, generator=g)
                    * 0.01
                )
    return model


def test_the_fused_moe_block_computes_what_mixtral_does(kernel: SkinnyKernel) -> None:
    stock = _upcycled_moe()
    fused = copy.deepcopy(stock)
    assert convert_experts(fused, kernel=kernel) == 2
    blocks = [layer.mlp for layer in fused.model.layers]
    assert all(isinstance(b, SharedBaseMoeBlock) and b.fused is not None for b in blocks)
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(2))
    stats = [stock.new_expert_stats(), fused.new_expert_stats()]
    with torch.inference_mode():
        for tokens in (ids, ids[:, :1], ids[:1, :1]):  # prefill (torch), decode rows (fused)
            torch.testing.assert_close(fused(tokens), stock(tokens), atol=1e-4, rtol=1e-4)
    assert torch.equal(stats[0].counts, stats[1].counts)  # the same experts chosen


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16, torch.int8, INT4])
def test_a_fused_rows_result_does_not_depend_on_its_batch(weight_dtype: torch.dtype) -> None:
    kernel = load_kernel(weight_dtype)
    assert kernel is not None
    model = _upcycled_moe(seed=3)
    convert_experts(model, kernel=kernel)
    block = model.model.layers[0].mlp
    assert isinstance(block, SharedBaseMoeBlock) and block.fused is not None
    x = torch.randn(1, 13, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        together, logits, selected = block(x)
        for i in (0, 7, 12):
            alone, alone_logits, alone_selected = block(x[:, i : i + 1])
            assert torch.equal(alone[0, 0], together[0, i])
            assert torch.equal(alone_logits[0], logits[i])
            assert torch.equal(alone_selected[0], selected[i])
        fused = block.fused
        block.fused = None  # the same weights through torch's ops
        reference = block(x)
        block.fused = fused
    torch.testing.assert_close(together, reference[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, reference[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(selected, reference[2])


async def test_native_decode_gives_the_same_tokens_alone_and_batched(
    kernel: SkinnyKernel, tmp_path: Path
) -> None:
    loaded = load_model(make_tiny_llm(tmp_path, seed=7, heads=(3, 1)), "float32")
    layers = loaded.model.model.layers
    assert all(
        isinstance(layer.self_attn, DecodeAttention) and layer.self_attn.decode_kernel
        for layer in layers
    )
    engine = Engine(loaded.model, loaded.tokenizer, EngineConfig(max_batch_size=3, max_context=96))
    loop = asyncio.get_running_loop()
    prompts = ["Hello world", "The capital of France is", "x", "Grüße aus München, schön! " * 3]

    def run(batch: list[str]) -> list[list[int]]:
        params = SamplingParams(max_tokens=16, temperature=0.0, stop_token_ids=frozenset())
        requests = [GenerationRequest(loaded.tokenizer.encode(p), params, loop) for p in batch]
        for request in requests:
            engine.submit(request)
        for _ in range(1000):  # stepped by hand; 4 requests on 3 rows: one joins mid-way
            if all(r.finished for r in requests):
                break
            engine.step()
        return [r.output_ids for r in requests]

    alone = [run([prompt])[0] for prompt in prompts]
    assert all(len(ids) == 16 for ids in alone)
    assert run(prompts) == alone


def test_the_native_rms_norm_equals_the_module(kernel: SkinnyKernel) -> None:
    norm = RMSNorm(96, eps=1e-5)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(4, 3, 96) * 5
    expected = norm(x)
    norm = DecodeRMSNorm(norm, kernel)
    assert norm.kernel is not None
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)
    many = torch.randn(1, 40, 96)  # more rows than a decode step: torch's op
    torch.testing.assert_close(norm(many), F.rms_norm(many, (96,), norm.weight, 1e-5))


def test_quantised_weights_are_packed_once_and_kept_in_the_model_directory(
    kernel: SkinnyKernel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_tiny_llm(tmp_path, model_type="mixtral", seed=6, heads=(4, 2), hidden_size=64)
    prompt = torch.tensor([[5, 17, 33, 2, 90, 41]])

    def start() -> tuple[torch.Tensor, dict[str, int]]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="moe_svc.loader"):
            model = load_model(path, "int4").model
        record = next(r for r in caplog.records if r.getMessage() == "quantised weights")
        with torch.inference_mode():
            logits = model(prompt)[0, -1]
        return logits, {"reused": record.reused, "packed": record.packed}  # type: ignore[attr-defined]

    first, made = start()
    assert made["packed"] > 0 and made["reused"] == 0
    assert (path / "quantized" / "int4.safetensors").exists()
    again, kept = start()
    assert kept == {"reused": made["packed"], "packed": 0}  # nothing quantised again
    assert torch.equal(again, first)
    # new weights (a rebuilt model): the stored packs are stale and packed afresh
    weights = next(path.glob("*.safetensors"))
    weights.touch()
    _, fresh = start()
    assert fresh == {"reused": 0, "packed": made["packed"]}
