"""Requests per second one replica of each service sustains: the capacity table of
docs/deployment.md.

    .venv/bin/python -m bench.capacity [--seconds 20] [--concurrency 1,2,4,8]
    .venv/bin/python -m bench.capacity --url http://127.0.0.1:8000 --key sk-gw-...

Each service is driven directly (not through the gateway) with its typical unit of
work, by a closed loop of `c` clients for `--seconds` at each concurrency, one
service at a time while the others idle: the gateway's authenticated model list, the
router's intent classification, a 32-token chat completion (moe_svc), a wiki search
with reranking (rag_svc), a calculator call (tools_svc), a context assembly
(memory_svc), one GAN image (creative_svc) and a direct answer (reasoning_svc, which
is moe_svc's work plus its own). A service's capacity is its best requests/s at a
concurrency whose p95 stays within `--slo-factor` times its p95 at c=1 (latency
that keeps growing is queueing, not throughput). The table gives, for each, the
replicas a load of `--target-rps` of that request needs.

Without `--url` it launches its own platform (`python -m launcher` on free loopback
ports, the default model, a 40-page wiki) and stops it afterwards. All traffic goes
to 127.0.0.1. Writes `<out>/capacity.json` and `<out>/capacity.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.platform import launched_platform, service_urls
from tests.helpers.servers import REPO_ROOT

PLATFORM_ENV = {"RAG_WIKI_MAX_PAGES": "40", "GATEWAY_RPM_LIMIT": "0", "GATEWAY_TPM_LIMIT": "0"}
Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


@dataclass(frozen=True)
class Work:
    """A service's unit of work: what is asked, and how."""

    service: str
    what: str
    # The i-th request (varied so that no cache answers it), given moe_svc's model id.
    request: Callable[[int, str], Request]
    auth: bool = False  # sent with the API key (the gateway)
    # Requests made once before the measurement (the sessions a context is assembled from).
    setup: tuple[Request, ...] = ()


def _chat(i: int, model: str) -> Request:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Name one fact about the number {i}."}],
        "max_tokens": 32,
        "temperature": 0,
    }
    return "POST", "/v1/chat/completions", body


WORKS = [
    Work("gateway", "GET /v1/models (key, limits)", lambda i, m: ("GET", "/v1/models", None), True),
    Work(
        "router_svc",
        "intent of a turn",
        lambda i, m: ("POST", "/v1/route", {"text": f"What is {i} plus {i + 1}?"}),
    ),
    Work("moe_svc", "chat completion, 32 tokens", _chat),
    Work(
        "rag_svc",
        "wiki search, hybrid + rerank, k=5",
        lambda i, m: (
            "POST",
            "/v1/collections/wiki/search",
            {"query": f"history of science {i}", "k": 5},
        ),
    ),
    Work(
        "tools_svc",
        "calculator",
        lambda i, m: (
            "POST",
            "/v1/tools/calculator/invoke",
            {"arguments": {"expression": f"{i}*7"}},
        ),
    ),
    Work(
        "memory_svc",
        "context assembly, 512 tokens",
        lambda i, m: ("POST", f"/v1/sessions/capacity-{i % 8}/context", {"budget_tokens": 512}),
        setup=tuple(
            (
                "POST",
                f"/v1/sessions/capacity-{n}/messages",
                {
                    "messages": [
                        {"role": "user", "content": f"Tell me about the number {n}, please."},
                        {"role": "assistant", "content": f"{n} is a small whole number."},
                    ]
                },
            )
            for n in range(8)
        ),
    ),
    Work(
        "creative_svc",
        "one GAN image",
        lambda i, m: (
            "POST",
            "/v1/images/generations",
            {"prompt": f"a sneaker {i}", "model": "gan"},
        ),
    ),
    Work(
        "reasoning_svc",
        "direct answer (moe_svc inside)",
        lambda i, m: (
            "POST",
            "/v1/reason",
            {"question": f"What is {i} times 3?", "strategy": "direct", "max_tokens": 32},
        ),
    ),
]


@dataclass
class Level:
    concurrency: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p95_ms: float


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(
    client: httpx.AsyncClient,
    work: Work,
    concurrency: int,
    seconds: float,
    headers: dict[str, str],
    model: str,
) -> Level:
    """A closed loop of `concurrency` clients for `seconds`; only answers count."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(1_000_000_000))
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            method, path, body = work.request(next(counter), model)
            started = time.perf_counter()
            try:
                response = await client.request(method, path, json=body, headers=headers)
                ok = response.status_code < 400
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Level(
        concurrency,
        len(latencies),
        errors,
        len(latencies) / elapsed,
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.95),
    )


def capacity_of(levels: list[Level], slo_factor: float) -> Level | None:
    """The level with the most requests/s whose p95 is within `slo_factor` x c=1's p95."""
    base = next((lv for lv in levels if lv.concurrency == 1 and lv.requests), None)
    if base is None:
        return None
    within = [
        lv
        for lv in levels
        if lv.requests and not lv.errors and lv.p95_ms <= slo_factor * base.p95_ms
    ]
    return max(within, key=lambda lv: lv.rps, default=base)


async def _measure(
    urls: dict[str, str], key: str, works: list[Work], levels: list[int], seconds: float
) -> dict[str, list[Level]]:
    results: dict[str, list[Level]] = {}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as probe:
        listed = (await probe.get(f"{urls['moe_svc']}/v1/models")).json()
    model = str(listed["data"][0]["id"])
    for work in works:
        headers = {"Authorization": f"Bearer {key}"} if work.auth else {}
        async with httpx.AsyncClient(
            base_url=urls[work.service], timeout=300, trust_env=False
        ) as c:
            for method, path, body in work.setup:
                (await c.request(method, path, json=body, headers=headers)).raise_for_status()
            await _drive(c, work, 1, min(seconds, 3), headers, model)  # warm up: first calls
            results[work.service] = []
            for concurrency in levels:
                level = await _drive(c, work, concurrency, seconds, headers, model)
                results[work.service].append(level)
                print(
                    f"  {work.service:14} c={concurrency:<3} {level.rps:7.2f} req/s  "
                    f"p50 {level.p50_ms:8.1f} ms  p95 {level.p95_ms:8.1f} ms  "
                    f"errors {level.errors}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def render(
    results: dict[str, list[Level]], works: list[Work], slo_factor: float, target_rps: float
) -> str:
    lines = [
        f"| service | request | req/s at c=1 | capacity req/s (at c) | p95 there | "
        f"replicas for {target_rps:g} req/s |",
        "|---|---|---|---|---|---|",
    ]
    for work in works:
        levels = results.get(work.service, [])
        first = levels[0] if levels else None
        best = capacity_of(levels, slo_factor)
        if first is None or best is None or not best.rps:
            lines.append(f"| {work.service} | {work.what} | - | - | - | - |")
            continue
        replicas = math.ceil(target_rps / best.rps)
        lines.append(
            f"| {work.service} | {work.what} | {first.rps:.2f} | {best.rps:.2f} "
            f"(c={best.concurrency}) | {best.p95_ms:.0f} ms | {replicas} |"
        )
    return "\n".join(lines)


@contextmanager
def _platform(args: argparse.Namespace) -> Iterator[tuple[dict[str, str], str]]:
    """(service -> URL, API key): the platform given, or one launched for this run."""
    if args.url:
        if not args.key:
            raise SystemExit("--url needs --key (an API key of the gateway)")
        yield service_urls(args.url), args.key
        return
    with launched_platform(PLATFORM_ENV, "capacity-platform-") as (launch, key):
        yield service_urls(launch.gateway), key


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running platform's gateway on 127.0.0.1 (else launched)")
    parser.add_argument("--key", help="its API key")
    parser.add_argument("--seconds", type=float, default=20, help="per concurrency level")
    parser.add_argument("--concurrency", default="1,2,4,8", help="levels, comma-separated")
    parser.add_argument("--services", default=",".join(w.service for w in WORKS))
    parser.add_argument("--slo-factor", type=float, default=3.0, help="p95 growth allowed")
    parser.add_argument("--target-rps", type=float, default=10.0, help="for the replicas column")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "capacity")
    args = parser.parse_args()
    levels = sorted({int(c) for c in args.concurrency.split(",")})
    if levels[0] != 1:
        levels.insert(0, 1)  # the latency reference
    wanted = set(args.services.split(","))
    works = [w for w in WORKS if w.service in wanted]
    with _platform(args) as (urls, key):
        results = asyncio.run(_measure(urls, key, works, levels, args.seconds))
    table = render(results, works, args.slo_factor, args.target_rps)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "seconds": args.seconds,
        "slo_factor": args.slo_factor,
        "target_rps": args.target_rps,
        "results": {s: [asdict(lv) for lv in levels] for s, levels in results.items()},
    }
    (args.out / "capacity.json").write_text(json.dumps(record, indent=2))
    (args.out / "capacity.md").write_text(table + "\n")
    print(f"wrote {args.out / 'capacity.md'}")
    failed = [s for s, lv in results.items() if not any(level.requests for level in lv)]
    if failed:
        print(f"no request answered: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
