"""What the python tool's isolation costs: a sandboxed run against a plain subprocess.

    .venv/bin/python -m bench.tools_bench            # 20 runs of each
    .venv/bin/python -m bench.tools_bench --runs 5

Both run `print(1)` with the same base interpreter, started the same way
(asyncio subprocess, pipes read to EOF): the reference is `python -I -c`,
ours is `PythonSandbox.run` (the jail: namespaces, a new root, rlimits, a
second fork, then `python -I`). Also: ten concurrent runs, sandboxed and
plain, wall-clock. Ratios are ours / reference (> 1: the sandbox is slower).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from tools_svc.sandbox import PythonSandbox, SandboxLimits

CODE = "print(1)"


async def plain(python: str) -> None:
    process = await asyncio.create_subprocess_exec(
        python, "-I", "-c", CODE, stdout=asyncio.subprocess.PIPE, env={}
    )
    await process.communicate()


async def timed(make: Callable[[], Awaitable[None]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await make()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def main(runs: int) -> None:
    sandbox = PythonSandbox(SandboxLimits(), concurrency=10)
    await sandbox.probe()
    if not sandbox.available:
        raise SystemExit(f"sandbox unavailable: {sandbox.unavailable_reason}")
    python = sandbox.python

    async def sandboxed() -> None:
        result = await sandbox.run(CODE)
        assert result.stdout == "1\n", result

    reference = await timed(lambda: plain(python), runs)
    ours = await timed(sandboxed, runs)
    ref_ms, our_ms = statistics.median(reference), statistics.median(ours)
    print(f"{'one run, median ms':<28}{'plain':>10}{'sandbox':>10}{'ratio':>8}")
    print(f"{'print(1)':<28}{ref_ms:>10.1f}{our_ms:>10.1f}{our_ms / ref_ms:>8.2f}")

    started = time.perf_counter()
    await asyncio.gather(*(plain(python) for _ in range(10)))
    ref_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await asyncio.gather(*(sandboxed() for _ in range(10)))
    our_ms = (time.perf_counter() - started) * 1000
    print(f"{'10 concurrent, wall ms':<28}{ref_ms:>10.1f}{our_ms:>10.1f}{our_ms / ref_ms:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
