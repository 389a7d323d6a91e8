"""Run Python snippets in the jail (`tools_svc/jail.py`) and collect what they print.

What a snippet gets (the guarantees the tests check):

- its own process tree, started with an empty environment (PATH, HOME,
  TMPDIR, LANG only), an isolated interpreter (`-I`: no user site, no
  `PYTHON*` variables), standard library only;
- its own root file system: `/usr`, the interpreter, a few `/etc` files, all
  read-only, and `/work` (also `/tmp`), a fresh tmpfs of
  `python_workdir_mb` that is gone when the run ends. The service's code,
  data, `/root`, `/home` and the host's `/tmp` do not exist there;
- its own network namespace with only its own loopback: nothing on the host,
  its loopback included, can be reached;
- when the service runs as root, uid `python_uid_base + slot` (a uid of its
  own per concurrent run, so runs never share a process quota or files);
  otherwise the service's uid inside a user namespace of its own;
- rlimits: CPU seconds, address space, processes, open files, file size,
  no core dumps; `no_new_privs`;
- a wall-clock timeout that kills the whole process group; the PID
  namespace then takes every process the snippet started with it, even one
  that left the process group.

Where the kernel refuses the namespaces, `probe()` leaves the sandbox
unavailable with the reason, and every run is refused with it (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import ServiceUnavailable

__all__ = ["PythonSandbox", "SandboxLimits", "SandboxResult"]

logger = logging.getLogger("tools_svc.sandbox")

JAIL = Path(__file__).with_name("jail.py")
SETUP_FAILED = 125
# A stream that passes this many times its kept size is not worth waiting for.
OVERFLOW_FACTOR = 16
# After a kill, how long the pipes may take to close before we stop waiting.
REAP_GRACE_S = 5.0


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 256
    processes: int = 16
    open_files: int = 64
    file_mb: int = 16
    workdir_mb: int = 32
    output_bytes: int = 65_536


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    exit_code: int | None
    signal: int | None
    timed_out: bool = False
    output_overflow: bool = False

    @property
    def error(self) -> str | None:
        """Why the run failed, in words; None when it exited with status 0."""
        if self.timed_out:
            return "timed out; the sandbox was killed"
        if self.output_overflow:
            return "printed far more than the output limit; the sandbox was killed"
        if self.signal is not None:
            if self.signal == signal.SIGXCPU:
                return "CPU time limit exceeded"
            return f"killed by signal {signal.Signals(self.signal).name}"
        if self.exit_code:
            return f"exited with status {self.exit_code}"
        return None


class SandboxSetupError(Exception):
    """The jail could not build the sandbox (its message says which step failed)."""


def _interpreter() -> str:
    # The base interpreter, not a venv's: the jail exposes the base prefix only.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / version
    return str(candidate) if candidate.exists() else os.path.realpath(sys.executable)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    # The jail started its own session, so its pid is the process group's id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_status(fd: int) -> dict[str, Any]:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65_536):
            data += chunk
    status: dict[str, Any] = {}
    for line in data.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            status.update(json.loads(line))
    return status


class PythonSandbox:
    """Runs snippets in the jail, at most `concurrency` at a time."""

    def __init__(
        self, limits: SandboxLimits, *, concurrency: int = 4, uid_base: int = 2_000_000_000
    ) -> None:
        self.limits = limits
        self.uid_base = uid_base
        self.python = _interpreter()
        # Each running sandbox holds a slot; as root the slot picks its uid.
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(concurrency):
            self._slots.put_nowait(slot)
        self.unavailable_reason: str | None = "not probed yet"

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    async def probe(self) -> None:
        """Run a trivial snippet; if the jail cannot be built, say why and stay off."""
        if not sys.platform.startswith("linux"):
            self.unavailable_reason = f"the sandbox needs Linux namespaces; this is {sys.platform}"
        else:
            try:
                result = await self._run("print('sandbox ok')", 30.0)
            except OSError as exc:
                self.unavailable_reason = f"the jail could not be started: {exc}"
            except SandboxSetupError as exc:
                self.unavailable_reason = (
                    f"{exc}. The kernel or the container's security profile (seccomp, "
                    "AppArmor) does not let tools_svc create the namespaces that isolate "
                    "snippets; it needs root or unprivileged user namespaces"
                )
            else:
                ok = result.exit_code == 0 and result.stdout == "sandbox ok\n"
                self.unavailable_reason = (
                    None
                    if ok
                    else f"the probe run failed ({result.error}): {result.stderr.strip()[-500:]}"
                )
        if self.unavailable_reason:
            logger.warning("python sandbox unavailable: %s", self.unavailable_reason)
        else:
            logger.info("python sandbox ready", extra={"mode": self.mode})

    @property
    def mode(self) -> str:
        return "root" if os.geteuid() == 0 else "user-namespace"

    async def run(self, code: str, timeout_s: float | None = None) -> SandboxResult:
        """Run `code`; refuses (503) when the sandbox is unavailable."""
        if self.unavailable_reason is not None:
            raise ServiceUnavailable(
                f"The python tool is disabled: {self.unavailable_reason}.",
                code="sandbox_unavailable",
            )
        timeout = min(timeout_s or self.limits.timeout_s, self.limits.timeout_s)
        try:
            return await self._run(code, timeout)
        except SandboxSetupError as exc:
            raise ServiceUnavailable(
                f"The python sandbox could not start: {exc}.", code="sandbox_failed"
            ) from None

    def _config(self, slot: int, status_fd: int) -> dict[str, Any]:
        limits = self.limits
        uid = self.uid_base + slot
        return {
            "python": self.python,
            "status_fd": status_fd,
            "uid": uid,
            "gid": uid,
            "work_mb": limits.workdir_mb,
            "limits": {
                "cpu_s": limits.cpu_s,
                "address_space_bytes": limits.memory_mb << 20,
                "processes": limits.processes,
                "open_files": limits.open_files,
                "file_size_bytes": limits.file_mb << 20,
            },
        }

    async def _run(self, code: str, timeout_s: float) -> SandboxResult:
        slot = await self._slots.get()
        status_r, status_w = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-I",
                "-S",
                "-B",
                str(JAIL),
                json.dumps(self._config(slot, status_w)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={},
                cwd="/",
                start_new_session=True,
                pass_fds=(status_w,),
            )
            os.close(status_w)
            status_w = -1
            try:
                result = await self._collect(process, code.encode(), timeout_s)
            finally:
                if process.returncode is None:
                    _kill_group(process)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), REAP_GRACE_S)
            status = _read_status(status_r)
        finally:
            if status_w >= 0:
                os.close(status_w)
            os.close(status_r)
            self._slots.put_nowait(slot)
        if "setup_error" in status:
            raise SandboxSetupError(str(status["setup_error"]))
        result.exit_code = status.get("exit_code")
        result.signal = status.get("signal")
        if result.timed_out or result.output_overflow:
            result.exit_code, result.signal = None, signal.SIGKILL
        return result

    async def _collect(
        self, process: asyncio.subprocess.Process, code: bytes, timeout_s: float
    ) -> SandboxResult:
        keep = self.limits.output_bytes
        streams = {"stdout": _Captured(), "stderr": _Captured()}
        overflow = asyncio.Event()

        async def drain(stream: asyncio.StreamReader | None, captured: _Captured) -> None:
            while stream is not None and (chunk := await stream.read(65_536)):
                captured.add(chunk, keep)
                if captured.total > keep * OVERFLOW_FACTOR and not overflow.is_set():
                    overflow.set()
                    _kill_group(process)

        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(code)
            await process.stdin.drain()
            process.stdin.close()
        readers = [
            asyncio.create_task(drain(process.stdout, streams["stdout"])),
            asyncio.create_task(drain(process.stderr, streams["stderr"])),
        ]
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    # Both pipes at EOF: every process that held them is gone.
                    # (`wait`, unlike `gather`, leaves the readers running on timeout.)
                    await asyncio.wait(readers)
                    await process.wait()
            except TimeoutError:
                timed_out = True
                _kill_group(process)
            # The PID namespace dies with its init, so the pipes close promptly;
            # if they did not, what was read so far is the answer.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REAP_GRACE_S):
                    await asyncio.wait(readers)
                    await process.wait()
        finally:
            for reader in readers:
                reader.cancel()
        return SandboxResult(
            stdout=streams["stdout"].text(),
            stderr=streams["stderr"].text(),
            exit_code=None,
            signal=None,
            timed_out=timed_out and not overflow.is_set(),
            output_overflow=overflow.is_set(),
        )


class _Captured:
    """The first bytes of a stream, and how many it carried in all."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes, keep: int) -> None:
        self.total += len(chunk)
        if len(self.kept) < keep:
            self.kept += chunk[: keep - len(self.kept)]

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.total > len(self.kept):
            text += f"\n[... truncated {self.total - len(self.kept)} bytes]"
        return text
