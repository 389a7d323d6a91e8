"""One supervised child process: start, prefixed output, readiness, restart, stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["ManagedProcess", "Output"]

_COLORS = ("36", "32", "33", "35", "34", "91", "92", "93", "95", "96")
# A child that stays up this long has recovered; its next crash starts the backoff anew.
_STABLE_AFTER_S = 60.0


def _readable(text: str) -> str:
    """A service's JSON log line as `time level [rid] msg key=value`; other text as is."""
    if not text.startswith("{"):
        return text
    try:
        record = json.loads(text)
    except ValueError:
        return text
    if not isinstance(record, dict) or "msg" not in record:
        return text
    ts = str(record.pop("ts", ""))[11:23]
    level = str(record.pop("level", "")).upper()
    rid = record.pop("request_id", None)
    msg = record.pop("msg")
    exc = record.pop("exc", None)
    for key in ("service", "logger"):
        record.pop(key, None)
    extras = " ".join(f"{k}={v}" for k, v in record.items())
    line = " ".join(p for p in (ts, f"{level:<7}", f"[{str(rid)[:8]}]" if rid else "", msg) if p)
    line = f"{line} {extras}" if extras else line
    return f"{line}\n{exc}" if exc else line


class Output:
    """Interleaves the children's lines on our stdout, each with its name."""

    def __init__(self, names: list[str]) -> None:
        self.width = max(len(n) for n in names)
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self._colors = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(names)} if color else {}

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<{self.width}} |"
        code = self._colors.get(name)
        if code:
            prefix = f"\033[{code}m{prefix}\033[0m"
        for part in _readable(text).splitlines() or [""]:
            sys.stdout.write(f"{prefix} {part}\n")
        sys.stdout.flush()


class ManagedProcess:
    """A child process kept alive: restarted with exponential backoff when it dies."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        output: Output,
        log_path: Path,
        ready: Callable[[], Awaitable[bool]],
        backoff_s: float,
        backoff_max_s: float,
        on_start: Callable[[ManagedProcess], None] = lambda p: None,
        umask: int | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.output = output
        self.log_path = log_path
        self.ready = ready
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.on_start = on_start
        self.umask = -1 if umask is None else umask  # subprocess's "leave it as it is"
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Own session: a terminal's Ctrl-C reaches only the launcher, which stops
        # the children in reverse dependency order.
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            umask=self.umask,
        )
        self._pump = asyncio.create_task(self._pump_output(self.proc))
        self.on_start(self)

    async def _pump_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await proc.stdout.readline():
                log.write(line)
                log.flush()
                self.output.line(self.name, line.decode("utf-8", "replace").rstrip())

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the readiness check passes; raise if the child dies or times out."""
        deadline = time.monotonic() + timeout_s
        last_note = time.monotonic()
        while True:
            if self.proc is None or self.proc.returncode is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"see its output above or {self.log_path}"
                )
            if await self.ready():
                return
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(
                    f"{self.name} was not ready within {timeout_s:.0f}s; see {self.log_path} "
                    "(raise PLATFORM_READY_TIMEOUT_S if it is still loading)"
                )
            if now - last_note > 15:
                self.output.line("launcher", f"still waiting for {self.name} to be ready ...")
                last_note = now
            await asyncio.sleep(0.25)

    async def supervise(self) -> None:
        """Restart the child whenever it exits, until `stop()`."""
        backoff = self.backoff_s
        while not self._stopping.is_set():
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            if self._pump is not None:
                await self._pump
            if self._stopping.is_set():
                return
            if time.monotonic() - started > _STABLE_AFTER_S:
                backoff = self.backoff_s
            self.output.line(
                "launcher", f"{self.name} exited with status {code}; restarting in {backoff:.1f}s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            if self._stopping.is_set():
                return
            backoff = min(backoff * 2, self.backoff_max_s)
            self.restarts += 1
            await self.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the child's process group; SIGKILL it if it lingers."""
        self._stopping.set()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            self.output.line("launcher", f"{self.name} ignored SIGTERM; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._pump is not None:
            await self._pump
