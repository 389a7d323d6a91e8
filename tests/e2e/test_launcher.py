"""`make up` end to end: the launcher brings the platform up, heals it, stops it.

Runs `python -m launcher` (what `make up` runs after installing) on free
loopback ports with its own var dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from common.topology import SERVICES
from tests.helpers.platform import Launch, launched, wait_until
from tests.helpers.servers import REPO_ROOT
from tests.helpers.tiny_llm import make_tiny_llm

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    var_dir = tmp_path_factory.mktemp("var")
    env = {
        "PLATFORM_RESTART_BACKOFF_S": "2",
        # A tiny model and a two-page knowledge base: this test is about the launcher; the
        # default model has tests of its own (tests/e2e/test_platform_default_model.py).
        "MOE_MODEL_DIR": str(make_tiny_llm(var_dir / "tiny-llm")),
        "RAG_WIKI_MAX_PAGES": "2",
        "RAG_WIKI_MAX_CHARS_PER_PAGE": "3000",
    }
    with launched(env, var_dir) as launch:
        yield launch


def test_all_services_and_redis_come_up(launch: Launch) -> None:
    readiness = launch.readiness()
    assert readiness is not None
    assert readiness["status"] == "ready"
    assert set(readiness["services"]) == (set(SERVICES) - {"gateway"}) | {"redis"}
    assert all(s["status"] == "up" for s in readiness["services"].values())
    output = launch.output()
    assert f"gateway at {launch.gateway}" in output
    # Logs of the services are interleaved on the launcher's output, prefixed by name.
    for name in SERVICES:
        assert f"\n{name:<13} | " in output, name


def test_the_local_api_key_is_printed_and_guards_the_api(launch: Launch) -> None:
    [line] = [x for x in launch.output().splitlines() if "local API key" in x]
    key = line.rsplit(" ", 1)[-1]
    key_file = launch.var_dir / "gateway" / "local_api_key"
    assert key_file.read_text().strip() == key
    assert key_file.stat().st_mode & 0o077 == 0  # private to its owner

    assert httpx.get(f"{launch.gateway}/v1/models", timeout=10).status_code == 401
    models = httpx.get(
        f"{launch.gateway}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert models.status_code == 200
    assert "auto" in [m["id"] for m in models.json()["data"]]


def test_second_launcher_says_it_is_already_running(launch: Launch, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "launcher"],
        cwd=REPO_ROOT,
        env=launch.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "already running" in result.stdout
    assert launch.gateway in result.stdout

    # Another var dir on the same ports: refused up front, naming the busy ports.
    other = subprocess.run(
        [sys.executable, "-m", "launcher"],
        cwd=REPO_ROOT,
        env={**launch.env, "PLATFORM_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 1
    assert "already in use" in other.stderr
    assert "gateway" in other.stderr


def test_a_crashed_service_shows_down_then_is_restarted(launch: Launch) -> None:
    pid = launch.state()["processes"]["tools_svc"]["pid"]
    os.kill(pid, signal.SIGKILL)

    def tools_is(status: str) -> Callable[[], bool]:
        def check() -> bool:
            readiness = launch.readiness()
            if readiness is None:
                return False
            platform = "ready" if status == "up" else "degraded"
            return bool(
                readiness["services"]["tools_svc"]["status"] == status
                and readiness["status"] == platform
            )

        return check

    wait_until("tools_svc to show down", tools_is("down"), 5, launch)
    wait_until("tools_svc to be back up", tools_is("up"), 60, launch)
    state = launch.state()["processes"]["tools_svc"]
    assert state["restarts"] == 1
    assert state["pid"] != pid
    assert "tools_svc exited with status -9; restarting in 2.0s" in launch.output()


def test_sigterm_stops_everything_and_redis_keeps_its_aof(launch: Launch) -> None:
    pids = [p["pid"] for p in launch.state()["processes"].values()]
    launch.process.send_signal(signal.SIGTERM)
    assert launch.process.wait(60) == 0

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert launch.output().rstrip().endswith("stopped")
    redis_dir = launch.var_dir / "redis"
    aof = [p for p in redis_dir.rglob("appendonly.aof*") if p.is_file()]
    assert aof, f"no AOF in {redis_dir}"
    # Conversations live in the AOF: readable by their owner only, like the password.
    for path in [*aof, launch.var_dir / "secrets" / "redis_password"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    password = (launch.var_dir / "secrets" / "redis_password").read_text().strip()
    assert password not in launch.output()
    assert (launch.var_dir / "logs" / "gateway.log").stat().st_size > 0
