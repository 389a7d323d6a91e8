"""Gateway overhead: the same chat completion through the gateway and straight to a stub.

The stub is `tests/helpers/gateway_fakes.py` (moe_svc's non-streamed chat
answer, model `fake-moe`); the gateway runs with a real Redis, an API key and
its rate limiter, as in production. For 1, 16 and 64 concurrent clients it
prints requests/s and p50/p95/p99 latency of both paths, the difference of
the medians, the median `x-gateway-overhead-ms` the gateway reports, and the
CPU time each process spent per request (from /proc; on a machine whose cores
the clients, the stub, Redis and the gateway share, latency differences grow
with the queue, while CPU per request is what the gateway itself costs).

    .venv/bin/python bench/gateway_bench.py [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.servers import REPO_ROOT, free_port, start_module, start_redis
from tests.integration.gateway_support import UPSTREAMS

BODY = {"model": "fake-moe", "messages": [{"role": "user", "content": "Hello, how are you?"}]}


def _cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(url: str, headers: dict[str, str], clients: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    overheads: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        for _ in range(min(clients, 8)):  # warm the connections
            await client.post(url, json=BODY, headers=headers)

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, json=BODY, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                if "x-gateway-overhead-ms" in response.headers:
                    overheads.append(float(response.headers["x-gateway-overhead-ms"]))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "rps": total / elapsed,
        "p50": _pct(latencies, 0.5),
        "p95": _pct(latencies, 0.95),
        "p99": _pct(latencies, 0.99),
        "overhead": statistics.median(overheads) if overheads else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="requests per run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        redis = start_redis(log_dir / "redis")
        stub_port, gateway_port = free_port(), free_port()
        stub = start_module(
            "tests.helpers.gateway_fakes",
            name="stub",
            port=stub_port,
            env={"FAKE_PORT": str(stub_port)},
            log_dir=log_dir,
        )
        env = {
            "GATEWAY_PORT": str(gateway_port),
            "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_RPM_LIMIT": "0",
            "GATEWAY_TPM_LIMIT": "0",
            **{f"GATEWAY_{name.split('_')[0].upper()}_URL": stub.url for name in UPSTREAMS},
        }
        gateway = start_module(
            "gateway", name="gateway", port=gateway_port, env=env, log_dir=log_dir
        )
        try:
            key = subprocess.run(
                [sys.executable, "-m", "gateway.admin", "--redis-url", redis.url, "create"],
                cwd=REPO_ROOT, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            auth = {"Authorization": f"Bearer {key}"}
            print(f"{args.requests} requests per run; latency in ms")
            print(f"{'clients':>7} {'path':>8} {'req/s':>8} {'p50':>7} {'p95':>7} {'p99':>7}")
            for clients in args.clients:
                stub_cpu = _cpu_ms(stub.process.pid)
                direct = asyncio.run(
                    _run(f"{stub.url}/v1/chat/completions", {}, clients, args.requests)
                )
                stub_direct = (_cpu_ms(stub.process.pid) - stub_cpu) / args.requests
                gateway_cpu, stub_cpu = _cpu_ms(gateway.process.pid), _cpu_ms(stub.process.pid)
                through = asyncio.run(
                    _run(f"{gateway.url}/v1/chat/completions", auth, clients, args.requests)
                )
                gateway_per = (_cpu_ms(gateway.process.pid) - gateway_cpu) / args.requests
                stub_through = (_cpu_ms(stub.process.pid) - stub_cpu) / args.requests
                for name, r in (("direct", direct), ("gateway", through)):
                    print(
                        f"{clients:>7} {name:>8} {r['rps']:>8.0f} {r['p50']:>7.2f} "
                        f"{r['p95']:>7.2f} {r['p99']:>7.2f}"
                    )
                print(
                    f"{clients:>7} overhead: p50 +{through['p50'] - direct['p50']:.2f} ms, "
                    f"req/s ratio {through['rps'] / direct['rps']:.2f}, "
                    f"x-gateway-overhead-ms median {through['overhead']:.2f}"
                )
                print(
                    f"{clients:>7} CPU ms per request: gateway {gateway_per:.2f}, "
                    f"stub {stub_through:.2f} (through the gateway) / {stub_direct:.2f} (direct)"
                )
        finally:
            gateway.stop()
            stub.stop()
            redis.stop()


if __name__ == "__main__":
    main()
