"""`make chaos`: every fault in sequence on one launched platform, under heavier load.

Starts `make up`'s launcher (a tiny model, moe_svc behind a fault proxy: see
`tests/faults/harness.py`), then for each fault (SIGKILL of each service, a Redis
restart, a stalled and a garbage-answering moe_svc) writes fresh user data, runs
`--clients` concurrent clients, injects the fault and prints one row: seconds until
the gateway's readiness said `degraded`, until the launcher restarted the process,
until readiness said `ready` again, how fast the request needing the failed part
failed, the load's answers by status, its slowest request, and whether everything
held (no 500, no hang, nothing acknowledged lost). Exits 1 when a fault did not hold.

    .venv/bin/python bench/chaos.py [--clients 8] [--only "kill moe_svc"]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.harness import FAULTS, FaultResult, fault_platform, run_fault

_COLUMNS = ("fault", "degraded", "restarted", "ready", "fail fast", "load by status", "slowest")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _row(result: FaultResult) -> list[str]:
    statuses = " ".join(f"{code}:{n}" for code, n in sorted(result.load.items()))
    held = "held" if result.held else "FAILED"
    return [
        result.fault,
        _s(result.degraded_s),
        _s(result.restarted_s),
        _s(result.ready_s),
        _s(result.fail_fast_s),
        statuses,
        f"{result.slowest_s:.2f} s",
        held,
    ]


def _table(results: list[FaultResult]) -> str:
    """A Markdown table, as docs/reliability.md shows it."""
    header = [*_COLUMNS, "held"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent load clients")
    parser.add_argument(
        "--only", action="append", choices=list(FAULTS), help="run this fault (repeatable)"
    )
    args = parser.parse_args()
    names = args.only or list(FAULTS)
    results: list[FaultResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        print("starting the platform (launcher, tiny model, moe_svc behind a fault proxy) ...")
        with fault_platform(Path(tmp)) as platform:
            print(f"ready in {time.monotonic() - started:.0f} s; {args.clients} load clients")
            for name in names:
                result = run_fault(platform, FAULTS[name], load_tasks=args.clients)
                results.append(result)
                row = _row(result)
                print(f"{name:<20} degraded {row[1]}, restarted {row[2]}, ready {row[3]}: {row[7]}")
                for problem in result.problems:
                    print(f"    {problem}")
    print()
    print(_table(results))
    print(f"\n{len(results)} faults in {time.monotonic() - started:.0f} s")
    return 0 if all(r.held for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
