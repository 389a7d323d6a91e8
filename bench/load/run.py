"""Load and soak through the gateway with Locust: `make load`, `make soak`.

    .venv/bin/python -m bench.load.run [--stages 1:40,2:40,4:40,8:40,16:40]
    .venv/bin/python -m bench.load.run --url http://127.0.0.1:8000 --key sk-gw-... [--var-dir var]
    .venv/bin/python -m bench.load.run --soak 1800 --soak-users 6

Without `--url` it launches its own platform (`python -m launcher` on a free block of
loopback ports, the default model, a 40-page wiki, no per-key rate limit so that
what sheds load is the platform's capacity) and stops it afterwards. The users of
bench/load/locustfile.py ramp up through `--stages` (users:seconds); the run is
bounded by the stages' time and by `--max-requests`. It prints a table per scenario
and per ramp step and writes `<out>/load.json` and `<out>/load.md`.

`--soak SECONDS` holds `--soak-users` users instead, and records every process's RSS
and open file descriptors, requests in flight, Redis's key count and the
collections' contents at the start and the end (`<out>/soak.json`, `<out>/soak.md`);
it needs the platform's var dir (its own, or `--var-dir`). The exit status is 1 when
a request got a 5xx other than 503-with-Retry-After, or no answer, or data was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.load.report import build_report, render_table, write_report
from bench.load.soak import compare, data_snapshot, resources
from bench.platform import launched_platform
from tests.helpers.servers import REPO_ROOT

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
UPLOAD_COLLECTION = "loadtest"  # the locustfile's; the only collection the load may grow
PROGRESS_EVERY_S = 60.0  # a line on stderr this often while Locust runs
PLATFORM_ENV = {
    "RAG_WIKI_MAX_PAGES": "40",
    # Retrieval may take most of a turn under load; the turn as a whole stays within the
    # router's default 100 s, below the users' 120 s patience.
    "ROUTER_RAG_TIMEOUT_S": "300",
    # One key sends all the load: the platform's capacity, not the key's quota, is measured.
    "GATEWAY_RPM_LIMIT": "0",
    "GATEWAY_TPM_LIMIT": "0",
}


@contextmanager
def _platform(args: argparse.Namespace) -> Iterator[tuple[str, str, Path | None]]:
    """(gateway URL, API key, var dir): the one given, or one launched for this run."""
    if args.url:
        key = args.key or os.environ.get("LOAD_API_KEY")
        if not key:
            raise SystemExit("--url needs --key (or LOAD_API_KEY): a key with every scope")
        yield args.url.rstrip("/"), key, args.var_dir
        return
    with launched_platform(PLATFORM_ENV, "load-platform-") as (launch, key):
        yield launch.gateway, key, launch.var_dir


def run_locust(
    url: str,
    key: str,
    stages: str,
    max_requests: int,
    timeout_s: float,
    log: Path,
    user_class: str = "PlatformUser",
) -> list[Any]:
    """Run the locustfile headless through `stages` (output to `log`); each request's record."""
    seconds = sum(float(part.split(":")[1]) for part in stages.split(","))
    with tempfile.NamedTemporaryFile(suffix=".json") as records:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "LOAD_API_KEY": key,
            "LOAD_STAGES": stages,
            "LOAD_MAX_REQUESTS": str(max_requests),
            "LOAD_TIMEOUT_S": str(timeout_s),
            "LOAD_RECORDS": records.name,
        }
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", url, "--only-summary", "--loglevel", "WARNING",
            "--stop-timeout", str(int(timeout_s)), user_class,
        ]  # fmt: skip
        # Past its stages and the last request's timeout, Locust is stuck: a hang to report.
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as output:
            limit_s = seconds + 2 * timeout_s + 60
            process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output,
                                       stderr=subprocess.STDOUT)  # fmt: skip
            _wait_showing_progress(process, seconds, limit_s, command)
        return list(json.loads(Path(records.name).read_text() or "[]"))


def _wait_showing_progress(
    process: subprocess.Popen[bytes], seconds: float, limit_s: float, command: list[str]
) -> None:
    """Wait for Locust, a line a minute on stderr; past `limit_s` it is killed (TimeoutExpired)."""
    started = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= limit_s:
                raise subprocess.TimeoutExpired(command, limit_s)
            try:
                process.wait(timeout=min(PROGRESS_EVERY_S, limit_s - elapsed))
                return
            except subprocess.TimeoutExpired:
                done = time.monotonic() - started
                print(
                    f"  load running: {done:.0f} s of {seconds:.0f} s", file=sys.stderr, flush=True
                )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _load(args: argparse.Namespace, url: str, key: str) -> int:
    started = time.time()
    records = run_locust(
        url, key, args.stages, args.max_requests, args.timeout, args.out / "load-locust.log"
    )
    report = build_report(records, started, time.time())
    report["stages"] = args.stages
    print(render_table(report))
    for path in write_report(report, args.out, "load"):
        print(f"wrote {path}")
    return 1 if report["overall"]["defects"] else 0


def _soak(args: argparse.Namespace, url: str, key: str, var_dir: Path | None) -> int:
    if var_dir is None:
        raise SystemExit("--soak needs the platform's var dir (--var-dir) for its processes")
    data_before = data_snapshot(var_dir, url, key)
    resources_before = resources(var_dir, url)
    stages = f"{args.soak_users}:{args.soak}"
    started = time.time()
    records = run_locust(
        url, key, stages, args.max_requests, args.timeout, args.out / "soak-locust.log"
    )
    ended = time.time()
    time.sleep(5)  # let the last answers finish before counting what is in flight
    resources_after = resources(var_dir, url)
    data_after = data_snapshot(var_dir, url, key)
    problems = compare(data_before, data_after, UPLOAD_COLLECTION)
    report = build_report(records, started, ended)
    report.update(
        stages=stages,
        resources={"start": resources_before, "end": resources_after},
        data={"start": data_before, "end": data_after, "problems": problems},
    )
    print(render_table(report))
    print(f"\n{'process':<14} {'RSS MiB':>15} {'fds':>11} {'in flight':>10} restarts")
    for name, end in resources_after.items():
        start = resources_before.get(name, {})
        print(
            f"{name:<14} {start.get('rss_mib', '-'):>7} -> {end.get('rss_mib', '-'):<5} "
            f"{start.get('fds', '-'):>4} -> {end.get('fds', '-'):<4} "
            f"{end.get('in_flight', '-')!s:>10} {end.get('restarts', 0)}"
        )
    print("data intact" if not problems else "DATA PROBLEMS:\n  " + "\n  ".join(problems))
    for path in write_report(report, args.out, "soak"):
        print(f"wrote {path}")
    return 1 if report["overall"]["defects"] or problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running platform's gateway (else one is launched)")
    parser.add_argument("--key", help="its API key (or LOAD_API_KEY)")
    parser.add_argument("--var-dir", type=Path, help="its var dir (soak: process list, Redis)")
    parser.add_argument("--stages", default="1:40,2:40,4:40,8:40,16:40", help="users:seconds,...")
    parser.add_argument("--max-requests", type=int, default=20_000, help="stop after this many")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a hang")
    parser.add_argument("--soak", type=float, default=0, help="soak for this many seconds")
    parser.add_argument("--soak-users", type=int, default=6, help="users during the soak")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "load", help="reports")
    args = parser.parse_args()
    with _platform(args) as (url, key, var_dir):
        return _soak(args, url, key, var_dir) if args.soak else _load(args, url, key)


if __name__ == "__main__":
    sys.exit(main())
