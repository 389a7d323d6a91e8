"""Start Redis and the eight services in dependency order, keep them up, stop them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import httpx

from common.settings import redact_url
from common.topology import start_order
from launcher.config import LaunchConfig
from launcher.process import ManagedProcess, Output
from launcher.redis_server import REDIS_UMASK, local_redis, redis_ping

__all__ = ["Platform", "acquire_lock", "busy_ports"]


def acquire_lock(run_dir: Path) -> IO[str] | None:
    """Take the launcher lock of this var dir; None when another launcher holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = (run_dir / "launcher.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def busy_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """The ports (by owner name) that something else already listens on."""
    busy = {}
    bind_host = "127.0.0.1" if host in {"0.0.0.0", ""} else host
    for name, port in ports.items():
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((bind_host, port))
            except OSError:
                busy[name] = port
    return busy


class Platform:
    def __init__(self, config: LaunchConfig) -> None:
        self.config = config
        self.order = start_order()
        names = ["launcher", *(["redis"] if not config.external_redis_url else []), *self.order]
        self.output = Output(names)
        self.processes: dict[str, ManagedProcess] = {}
        self.run_dir = config.var_dir / "run"
        self._http = httpx.AsyncClient(timeout=2.0, trust_env=False)

    def say(self, text: str) -> None:
        self.output.line("launcher", text)

    def write_state(self, _: ManagedProcess | None = None) -> None:
        """Record pids and URLs in var/run/launcher.json (for `make up` twice, and tests)."""
        state = {
            "pid": os.getpid(),
            "gateway_url": self.config.url("gateway"),
            "processes": {
                name: {"pid": p.pid, "restarts": p.restarts} for name, p in self.processes.items()
            },
        }
        path = self.run_dir / "launcher.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def _http_ready(self, service: str) -> Callable[[], Awaitable[bool]]:
        url = f"{self.config.url(service)}/readyz"

        async def ready() -> bool:
            try:
                response = await self._http.get(url)
            except httpx.HTTPError:
                return False
            return response.status_code == 200

        return ready

    def _process(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        ready: Callable[[], Awaitable[bool]],
        umask: int | None = None,
    ) -> ManagedProcess:
        process = ManagedProcess(
            name,
            argv,
            env,
            self.output,
            self.config.var_dir / "logs" / f"{name}.log",
            ready,
            self.config.restart_backoff_s,
            self.config.restart_backoff_max_s,
            on_start=self.write_state,
            umask=umask,
        )
        self.processes[name] = process
        return process

    async def _start(self, process: ManagedProcess, supervisors: list[asyncio.Task[None]]) -> None:
        started = time.monotonic()
        self.say(f"starting {process.name} ...")
        await process.start()
        await process.wait_ready(self.config.ready_timeout_s)
        self.say(f"{process.name} ready in {time.monotonic() - started:.1f}s")
        supervisors.append(asyncio.create_task(process.supervise()))

    async def local_api_key(self) -> str | None:
        """The gateway's local API key (created on first start), as `make up` prints it."""
        key_file = self.config.var_dir / "gateway" / "local_api_key"
        # Redis's URL (with its password) goes in the environment, never on a command line.
        argv = [self.config.python, "-m", "gateway.admin"]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            "local",
            "--file",
            str(key_file),
            env=self.config.service_env("gateway"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            self.say(f"could not create the local API key: {err.decode(errors='replace')[-500:]}")
            return None
        return out.decode().strip().splitlines()[-1] if out.strip() else None

    async def run(self, stop: asyncio.Event) -> int:
        """Start everything, then supervise until `stop` is set; return the exit status."""
        config = self.config
        supervisors: list[asyncio.Task[None]] = []
        try:
            if config.external_redis_url:
                self.say(f"using Redis at {redact_url(config.external_redis_url)} (REDIS_URL)")
            else:
                local = local_redis(config.var_dir, config.host, config.redis_port)
                config.redis_password = local.password
                redis = self._process(
                    "redis",
                    local.argv,
                    dict(os.environ),
                    lambda: redis_ping("127.0.0.1", config.redis_port, password=local.password),
                    umask=REDIS_UMASK,
                )
                await self._start(redis, supervisors)
            api_key = await self.local_api_key()
            for name in self.order:
                if stop.is_set():
                    break
                argv = [config.python, "-m", name]
                process = self._process(
                    name, argv, config.service_env(name), self._http_ready(name)
                )
                await self._start(process, supervisors)
            if not stop.is_set():
                self.say(f"all services ready; gateway at {config.url('gateway')}")
                self.say(f"platform readiness: curl {config.url('gateway')}/readyz")
                if api_key:
                    self.say(f"local API key (Authorization: Bearer ...): {api_key}")
                self.say("press Ctrl-C to stop")
            await stop.wait()
            return 0
        except (RuntimeError, TimeoutError) as exc:
            self.say(f"start-up failed: {exc}")
            return 1
        finally:
            await self.shutdown(supervisors)

    async def shutdown(self, supervisors: list[asyncio.Task[None]]) -> None:
        """Stop the services in reverse dependency order, Redis last."""
        self.say("stopping ...")
        for name in reversed(list(self.processes)):
            await self.processes[name].stop()
        for task in supervisors:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "launcher.json").unlink()
        self.say("stopped")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
