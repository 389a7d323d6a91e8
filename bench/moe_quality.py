"""Quality of the default model: perplexity and greedy answers, ours next to transformers.

    .venv/bin/python -m bench.moe_quality               # about 5 minutes on 2 cores
    .venv/bin/python -m bench.moe_quality --tokens 512  # quicker, noisier

Held-out text: the Lee news corpus (gensim's test data, never used to train or
specialise anything here), scored in windows of `--window` tokens. Four runs:

- dense SmolLM2 (`LlamaForCausalLM`, transformers), the reference;
- the upcycled model in transformers (`MixtralForCausalLM`);
- the upcycled model in our engine, fp32, bf16, int8 and int4 weights (weight-only:
  int8 with a scale per output row, int4 with a scale per 32 weights; activations fp32).

Before expert specialisation the upcycled model computes what the dense one does,
so all four perplexities agree to rounding (bf16 a little off) and the greedy
answers are the same text. Prints a Markdown table for the README, and the quality
gate of each smaller weight type against our fp32: perplexity within +1% for int8,
+4% for int4.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from moe_svc.build_default import DENSE_NAME, MOE_NAME, build
from moe_svc.engine import Engine, EngineConfig, GenerationRequest, SamplingParams
from moe_svc.loader import LoadedModel, TextTokenizer, load_model

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How many legs does a spider have?",
    "Give me one tip for learning to cook.",
]
ANSWER_TOKENS = 40
# Largest perplexity increase over our fp32 engine each weight type may cost.
GATES = {"bf16": 0.01, "int8": 0.01, "int4": 0.04}

Forward = Callable[[torch.Tensor], torch.Tensor]  # (1, T) ids -> (1, T, V) logits


def held_out_text() -> str:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs gensim (its test data holds the Lee news corpus)")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / "lee.cor"
    return path.read_text(errors="replace")


def perplexity(forward: Forward, ids: list[int], window: int) -> float:
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start : start + window + 1]])
            if chunk.shape[1] < 2:
                break
            logits = forward(chunk[:, :-1]).float()
            loss = F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum")
            total, count = total + float(loss), count + chunk.shape[1] - 1
    return math.exp(total / count)


def transformers_run(
    path: Path, arch: str, ids: list[int], window: int, prompts: list[list[int]]
) -> tuple[float, list[list[int]]]:
    from transformers import LlamaForCausalLM, MixtralForCausalLM

    cls = MixtralForCausalLM if arch == "mixtral" else LlamaForCausalLM
    model = cls.from_pretrained(path, dtype=torch.float32)
    model.eval()  # type: ignore[no-untyped-call]
    ppl = perplexity(lambda x: model(x).logits, ids, window)
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            out = model.generate(
                torch.tensor([prompt]), max_new_tokens=ANSWER_TOKENS, do_sample=False
            )
            answers.append(out[0, len(prompt) :].tolist())
    return ppl, answers


async def _engine_answers(
    engine: Engine, prompts: list[list[int]], stop: frozenset[int], max_tokens: int
) -> list[list[int]]:
    loop = asyncio.get_running_loop()
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop_token_ids=stop)
    requests = [GenerationRequest(p, params, loop) for p in prompts]
    for request in requests:
        engine.submit(request)
    for request in requests:
        while (await request.queue.get()).finish_reason is None:
            pass
    return [r.output_ids for r in requests]


def greedy_engine_answers(
    loaded: LoadedModel,
    prompts: list[list[int]],
    max_tokens: int = ANSWER_TOKENS,
    max_context: int = 512,
) -> list[list[int]]:
    """Greedy output ids of each prompt, batched by our engine (answers only, not timed)."""
    config = EngineConfig(max_batch_size=4, max_context=max_context)
    engine = Engine(loaded.model, loaded.tokenizer, config)
    engine.start()
    try:
        return asyncio.run(_engine_answers(engine, prompts, loaded.stop_token_ids, max_tokens))
    finally:
        engine.stop()


def engine_run(
    path: Path, dtype: str, ids: list[int], window: int, prompts: list[list[int]]
) -> tuple[float, list[list[int]]]:
    loaded = load_model(path, dtype)
    return perplexity(loaded.model, ids, window), greedy_engine_answers(loaded, prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--tokens", type=int, default=2048, help="held-out tokens scored")
    parser.add_argument("--window", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    models = args.data_dir / "models"
    build(models)
    moe_dir, dense_dir = models / MOE_NAME, models / DENSE_NAME
    tokenizer = TextTokenizer(moe_dir / "tokenizer.json")
    ids = tokenizer.encode(held_out_text())[: args.tokens + 1]
    loaded_template = load_template(moe_dir)
    prompts = [tokenizer.encode(loaded_template([{"role": "user", "content": p}])) for p in PROMPTS]
    runs: dict[str, Callable[[], tuple[float, list[list[int]]]]] = {
        "dense, transformers LlamaForCausalLM (fp32)": lambda: transformers_run(
            dense_dir, "llama", ids, args.window, prompts
        ),
        "upcycled 8x, transformers MixtralForCausalLM (fp32)": lambda: transformers_run(
            moe_dir, "mixtral", ids, args.window, prompts
        ),
        "upcycled 8x, our engine (fp32)": lambda: engine_run(
            moe_dir, "float32", ids, args.window, prompts
        ),
        "upcycled 8x, our engine (bf16)": lambda: engine_run(
            moe_dir, "bfloat16", ids, args.window, prompts
        ),
        "upcycled 8x, our engine (int8)": lambda: engine_run(
            moe_dir, "int8", ids, args.window, prompts
        ),
        "upcycled 8x, our engine (int4)": lambda: engine_run(
            moe_dir, "int4", ids, args.window, prompts
        ),
    }
    results = {}
    for name, run in runs.items():
        started = time.perf_counter()
        results[name] = run()
        gc.collect()
        print(f"{name}: ppl {results[name][0]:.3f} ({time.perf_counter() - started:.0f} s)")
    reference = next(iter(results.values()))[1]
    print(
        f"\n## Default model quality (Lee corpus, {len(ids) - 1} tokens, "
        f"windows of {args.window})\n"
    )
    print("| model | perplexity | greedy answers equal to dense |")
    print("|---|---|---|")
    for name, (ppl, answers) in results.items():
        same = sum(a == r for a, r in zip(answers, reference, strict=True))
        print(f"| {name} | {ppl:.3f} | {same}/{len(answers)} |")
    fp32 = results["upcycled 8x, our engine (fp32)"]
    print("\n| weights | perplexity vs our fp32 | gate | greedy answers equal to fp32 |")
    print("|---|---|---|---|")
    for dtype, limit in GATES.items():
        ppl, answers = results[f"upcycled 8x, our engine ({dtype})"]
        change = ppl / fp32[0] - 1
        same = sum(a == r for a, r in zip(answers, fp32[1], strict=True))
        verdict = "passed" if change <= limit else "**failed**"
        print(f"| {dtype} | {change:+.2%} | <= +{limit:.0%}: {verdict} | {same}/{len(answers)} |")
    print("\n### Greedy answers\n")
    for i, prompt in enumerate(PROMPTS):
        print(f"**{prompt}**\n")
        for name, (_, answers) in results.items():
            print(f"- {name}: {tokenizer.decode(answers[i])!r}")
        print()


def load_template(path: Path) -> Callable[[list[dict[str, str]]], str]:
    from moe_svc.chat_template import ChatTemplate

    return ChatTemplate.from_model_dir(path).render


if __name__ == "__main__":
    main()
