"""The platform as `make up` starts it (`python -m launcher`), for end-to-end tests.

`launched(env, var_dir)` runs the launcher on a free block of loopback ports with
its own var dir, waits until the gateway's /readyz says ready, and stops it with
SIGTERM (as Ctrl-C would) when the block ends.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common.topology import SERVICES
from launcher.platform import busy_ports
from tests.helpers.servers import REPO_ROOT

__all__ = ["Launch", "free_port_base", "launched", "run_launcher", "wait_until"]


# Blocks below Linux's ephemeral range (32768-60999): a port there can be taken, between
# the check and the bind, as the source port of any outgoing connection (a CI run lost
# tools_svc's port so, to the launcher's own health probes).
EPHEMERAL_FIRST = 32768


def free_port_base() -> int:
    for _ in range(50):
        base = random.randrange(20000, EPHEMERAL_FIRST - 100, 100)
        ports = {name: base + spec.port - 8000 for name, spec in SERVICES.items()}
        ports["redis"] = base + 79
        if not busy_ports("127.0.0.1", ports):
            return base
    raise RuntimeError("no free block of ports found")


@dataclass
class Launch:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    var_dir: Path
    log_path: Path
    gateway: str

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.var_dir / "run" / "launcher.json").read_text()))

    def readiness(self) -> dict[str, Any] | None:
        try:
            return dict(httpx.get(f"{self.gateway}/readyz", timeout=3).json())
        except (httpx.HTTPError, ValueError):
            return None


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, launch: Launch) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if launch.process.poll() is not None:
            raise AssertionError(f"launcher exited while waiting for {what}:\n{launch.output()}")
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}:\n{launch.output()[-4000:]}"
    )


def run_launcher(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "launcher"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def launched(
    extra_env: dict[str, str], var_dir: Path, ready_timeout_s: float = 360
) -> Iterator[Launch]:
    """The launched platform, ready; stopped with SIGTERM when the block ends."""
    base = free_port_base()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PLATFORM_PORT_BASE": str(base),
        "PLATFORM_VAR_DIR": str(var_dir),
        "PLATFORM_READY_TIMEOUT_S": str(int(ready_timeout_s) - 60),
        **extra_env,
    }
    env.pop("REDIS_URL", None)
    log_path = var_dir / "launcher.out"
    process = run_launcher(env, log_path)
    launch = Launch(process, env, var_dir, log_path, f"http://127.0.0.1:{base}")
    try:
        # Ready as a user sees it: the launcher has said so (after it printed the gateway's
        # URL and the key), and the gateway's /readyz agrees.
        wait_until(
            "the platform to be ready",
            lambda: (
                "press Ctrl-C to stop" in launch.output()
                and (launch.readiness() or {}).get("status") == "ready"
            ),
            ready_timeout_s,
            launch,
        )
        yield launch
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
