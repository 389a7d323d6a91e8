"""Accuracy of each reasoning strategy with the default model, and what each costs.

    .venv/bin/python -m bench.reasoning_eval                        # moe_svc on :8002
    .venv/bin/python -m bench.reasoning_eval --moe-url http://127.0.0.1:8002 \
        --strategies direct,pal,react --limit 20
    .venv/bin/python -m bench.reasoning_eval --strategies direct,pal,react --every 4
    .venv/bin/python -m bench.reasoning_eval --reasoning-url http://127.0.0.1:8007
    .venv/bin/python -m bench.reasoning_eval --strategies direct,pal \
        --problems bench/data/arithmetic_heldout.jsonl      # the hand-written held-out set

56 arithmetic and word problems written for this project, each with one
integer answer (or, with `--problems`, any JSON lines of question and
answer). The bench starts tools_svc and reasoning_svc on free ports
(pointed at `--moe-url`, which must serve the OpenAI chat API), or uses a
running reasoning_svc, and asks `POST /v1/reason` every problem with every
strategy. `direct` is the reference: the table gives each strategy's
accuracy, its difference from direct, model calls and tokens per problem
(reasoning_svc's `usage`), and seconds per problem. Goal: `pal`
and `react` clearly beat `direct` on arithmetic.

Costs: on two CPU cores the default model writes about 8 tokens/s, so a
full run (self-consistency samples 5 chains, ToT about 25 calls a problem)
takes hours there; `--limit`, `--strategies` and `--samples` cut it down.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reasoning_svc.answers import same_answer
from tests.helpers.servers import start_service

STRATEGIES = ("direct", "cot", "self_consistency", "tot", "react", "pal")

# (question, answer); the first 28 are plain arithmetic, the rest word problems.
PROBLEMS: list[tuple[str, str]] = [
    ("What is 17 * 23 + 456?", "847"),
    ("What is 1234 + 5678?", "6912"),
    ("What is 987 - 654?", "333"),
    ("What is 144 / 12?", "12"),
    ("What is 25 * 25 * 4?", "2500"),
    ("What is 2 to the power of 10?", "1024"),
    ("What is 15% of 240?", "36"),
    ("What is 3456 divided by 8?", "432"),
    ("What is 99 * 101?", "9999"),
    ("What is 12 squared minus 5 squared?", "119"),
    ("What is the sum of the integers from 1 to 100?", "5050"),
    ("What is 7 factorial?", "5040"),
    ("What is 1000 - 37 * 12?", "556"),
    ("What is (48 + 52) * (13 - 8)?", "500"),
    ("What is 3/4 of 96?", "72"),
    ("What is 123 * 45?", "5535"),
    ("What is 6.5 * 8?", "52"),
    ("What is 20% of 350 plus 10% of 120?", "82"),
    ("What is 81 divided by 3, times 7?", "189"),
    ("What is the average of 12, 18, 24 and 30?", "21"),
    ("What is 2468 + 1357 - 999?", "2826"),
    ("What is 56 * 78?", "4368"),
    ("What is the greatest common divisor of 84 and 126?", "42"),
    ("What is 11 cubed?", "1331"),
    ("What is 4096 divided by 64?", "64"),
    ("What is 17 + 28 + 39 + 46?", "130"),
    ("What is 250 * 0.36?", "90"),
    ("What is the remainder when 1000 is divided by 7?", "6"),
    (
        "A farmer has 30 heads and 74 legs among his chickens and cows. How many cows are there?",
        "7",
    ),
    ("Tom has 3 boxes with 12 apples each. He eats 5 apples. How many apples are left?", "31"),
    ("A shirt costs $40 after a 20% discount. What was the original price in dollars?", "50"),
    ("A train travels at 60 km per hour for 2.5 hours. How many kilometers does it travel?", "150"),
    (
        "Mary has 3 times as many marbles as John. Together they have 48. "
        "How many marbles does Mary have?",
        "36",
    ),
    ("A rectangle is 12 cm long and 7 cm wide. What is its area in square centimeters?", "84"),
    ("Pens cost $3 each. How much do 14 pens cost, in dollars?", "42"),
    ("A class has 28 students. 4 are absent. How many students are present?", "24"),
    (
        "A baker makes 15 trays of 24 cookies and sells 290 cookies. How many cookies are left?",
        "70",
    ),
    (
        "If 5 machines make 5 widgets in 5 minutes, how many minutes do 100 machines need to "
        "make 100 widgets?",
        "5",
    ),
    (
        "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
        "How many cents does the ball cost?",
        "5",
    ),
    ("Sarah reads 25 pages a day. How many days does she need to read a 400-page book?", "16"),
    ("A car uses 6 liters of fuel per 100 km. How many liters does it need for 450 km?", "27"),
    (
        "John is 4 times as old as his son. In 20 years he will be twice as old as his son. "
        "How old is the son now?",
        "10",
    ),
    (
        "There are 12 rows of 15 chairs in a hall. 37 chairs are taken. How many chairs are free?",
        "143",
    ),
    (
        "A tank is filled by pipe A in 6 hours and by pipe B in 3 hours. How many hours do both "
        "pipes together take to fill it?",
        "2",
    ),
    ("Anna saves $15 a week. How many weeks does she need to save $330?", "22"),
    (
        "A pizza is cut into 8 slices. Four friends eat 2 slices each, then order 2 more pizzas "
        "of 8 slices. How many slices are left?",
        "16",
    ),
    (
        "A store has 120 apples. It sells 45 in the morning and 38 in the afternoon. "
        "How many apples remain?",
        "37",
    ),
    ("The sum of two numbers is 50 and their difference is 14. What is the larger number?", "32"),
    ("A runner runs 400 meters in 80 seconds. What is the speed in meters per second?", "5"),
    (
        "A book costs $12 and a pen costs $3. How much do 4 books and 6 pens cost, in dollars?",
        "66",
    ),
    ("A garden is 9 meters by 14 meters. How many meters of fence go around it?", "46"),
    (
        "If 8 workers build a wall in 10 days, how many days do 5 workers need at the same rate?",
        "16",
    ),
    ("A phone costs $600 and its price drops 25%. What is the new price in dollars?", "450"),
    ("There are 7 days in a week. How many days are in 13 weeks?", "91"),
    ("A bus carries 45 passengers. How many buses are needed for 310 passengers?", "7"),
    (
        "Lisa had 84 stickers. She gave a quarter of them to her brother and 10 to her friend. "
        "How many does she have left?",
        "53",
    ),
]


@dataclass
class Tally:
    correct: int = 0
    asked: int = 0
    failed: int = 0
    model_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)


@contextmanager
def reasoning_server(args: argparse.Namespace) -> Iterator[str]:
    if args.reasoning_url:
        yield args.reasoning_url.rstrip("/")
        return
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        tools = start_service("tools_svc", log_dir)
        try:
            reasoning = start_service(
                "reasoning_svc",
                log_dir,
                upstreams={"moe_svc": args.moe_url, "tools_svc": tools.url},
                env={"REASONING_MODEL_TIMEOUT_S": "600", "REASONING_LOG_LEVEL": "WARNING"},
            )
            try:
                yield reasoning.url
            finally:
                reasoning.stop()
        finally:
            tools.stop()


def ask(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = client.post(f"{url}/v1/reason", json=body, timeout=3600)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        return {"error": response.text[:200]}, elapsed
    result: dict[str, Any] = response.json()
    return result, elapsed


def load_problems(path: Path) -> list[tuple[str, str]]:
    """(question, expected answer as text) from JSON lines with `question` and `answer`."""
    problems = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            answer = row["answer"]
            if isinstance(answer, float) and answer.is_integer():
                answer = int(answer)
            problems.append((str(row["question"]), str(answer)))
    return problems


def evaluate(
    url: str, strategy: str, problems: list[tuple[str, str]], args: argparse.Namespace
) -> Tally:
    tally = Tally()
    body_extra: dict[str, Any] = {}
    if strategy == "self_consistency":
        body_extra["samples"] = args.samples
    if strategy == "pal" and args.pal_samples:
        body_extra["samples"] = args.pal_samples

    def one(problem: tuple[str, str]) -> tuple[tuple[str, str], dict[str, Any], float]:
        with httpx.Client() as client:
            result, elapsed = ask(
                client, url, {"question": problem[0], "strategy": strategy, **body_extra}
            )
        return problem, result, elapsed

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for (question, expected), result, elapsed in pool.map(one, problems):
            tally.asked += 1
            tally.seconds += elapsed
            if "error" in result:
                tally.failed += 1
                tally.wrong.append((question, expected, f"error: {result['error']}"))
                continue
            tally.model_calls += int(result["usage"]["model_calls"])
            tally.tokens += int(result["usage"]["total_tokens"])
            if same_answer(str(result["answer"]), expected):
                tally.correct += 1
            else:
                tally.wrong.append((question, expected, str(result["answer"])[:80]))
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moe-url", default="http://127.0.0.1:8002")
    parser.add_argument("--reasoning-url", default="", help="use a running reasoning_svc")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--limit", type=int, default=None, help="the first N (default: all)")
    parser.add_argument(
        "--every", type=int, default=1, help="every k-th problem (a subset spread over both kinds)"
    )
    parser.add_argument("--samples", type=int, default=5, help="self-consistency chains")
    parser.add_argument(
        "--pal-samples", type=int, default=0, help="programs PAL votes over (0: the service's)"
    )
    parser.add_argument(
        "--problems",
        type=Path,
        help="JSON lines of {question, answer} to use instead of the built-in set "
        "(bench/data/arithmetic_heldout.jsonl: the hand-written held-out word problems)",
    )
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = set(strategies) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    if "direct" not in strategies:
        strategies.insert(0, "direct")  # the reference
    source = load_problems(args.problems) if args.problems else PROBLEMS
    problems = source[:: max(1, args.every)][: args.limit or len(source)]

    if not args.reasoning_url:
        try:
            httpx.get(f"{args.moe_url}/v1/models", timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            print(
                f"moe_svc is not serving its OpenAI API at {args.moe_url}: {exc}", file=sys.stderr
            )
            return 2

    results: dict[str, Tally] = {}
    with reasoning_server(args) as url:
        for strategy in strategies:
            results[strategy] = evaluate(url, strategy, problems, args)
            t = results[strategy]
            print(f"  {strategy}: {t.correct}/{t.asked} in {t.seconds:.0f}s", file=sys.stderr)

    n = len(problems)
    if args.problems:
        print(f"\n{n} problems from {args.problems}\n")
    else:
        arithmetic = sum(1 for p in problems if PROBLEMS.index(p) < 28)
        print(f"\n{n} problems ({arithmetic} plain arithmetic, {n - arithmetic} word problems)\n")
    print(
        f"{'strategy':<18}{'accuracy':>9}{'vs direct':>11}{'calls/q':>9}{'tokens/q':>10}"
        f"{'s/q':>8}{'errors':>8}"
    )
    reference = results["direct"].correct / max(1, n)
    for strategy, t in results.items():
        accuracy = t.correct / max(1, t.asked)
        print(
            f"{strategy:<18}{accuracy:>9.3f}{accuracy - reference:>+11.3f}"
            f"{t.model_calls / max(1, t.asked):>9.1f}{t.tokens / max(1, t.asked):>10.0f}"
            f"{t.seconds / max(1, t.asked):>8.1f}{t.failed:>8}"
        )
    if args.show_errors:
        for strategy, t in results.items():
            for question, expected, got in t.wrong:
                print(f"[{strategy}] expected {expected}, got {got!r}: {question}")
    if args.json:
        rows = {
            s: {k: v for k, v in vars(t).items() if k != "wrong"} | {"wrong": t.wrong}
            for s, t in results.items()
        }
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
