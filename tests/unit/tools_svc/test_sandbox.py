"""The sandbox's refusal when the kernel denies namespaces, and its error wording."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from common.errors import ServiceUnavailable
from tools_svc import sandbox as sandbox_module
from tools_svc.sandbox import PythonSandbox, SandboxLimits, SandboxResult

# Stands in for the jail on a kernel that refuses namespaces: it reports the
# failure on the status pipe as the real jail does, and exits 125.
DENYING_JAIL = """
import json, os, sys
fd = json.loads(sys.argv[1])["status_fd"]
os.write(fd, json.dumps({"setup_error": "unshare(mount, network, PID, IPC, UTS namespaces) "
                         "failed: Operation not permitted (EPERM)"}).encode() + b"\\n")
sys.exit(125)
"""


async def test_probe_failure_disables_python_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jail = tmp_path / "jail.py"
    jail.write_text(DENYING_JAIL)
    monkeypatch.setattr(sandbox_module, "JAIL", jail)
    sandbox = PythonSandbox(SandboxLimits())

    await sandbox.probe()

    assert not sandbox.available
    assert sandbox.unavailable_reason is not None
    assert "Operation not permitted" in sandbox.unavailable_reason
    assert "namespaces" in sandbox.unavailable_reason
    with pytest.raises(ServiceUnavailable) as info:
        await sandbox.run("print(1)")
    assert info.value.code == "sandbox_unavailable"
    assert "Operation not permitted" in info.value.message


async def test_missing_interpreter_disables_python(tmp_path: Path) -> None:
    sandbox = PythonSandbox(SandboxLimits())
    sandbox.python = str(tmp_path / "no-such-python")

    await sandbox.probe()

    assert sandbox.unavailable_reason is not None
    assert "could not be started" in sandbox.unavailable_reason


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (SandboxResult("", "", 0, None), None),
        (SandboxResult("", "", 3, None), "exited with status 3"),
        (SandboxResult("", "", None, signal.SIGXCPU), "CPU time limit exceeded"),
        (SandboxResult("", "", None, signal.SIGSEGV), "killed by signal SIGSEGV"),
        (SandboxResult("", "", None, signal.SIGKILL, timed_out=True), "timed out"),
        (SandboxResult("", "", None, signal.SIGKILL, output_overflow=True), "output limit"),
    ],
)
def test_errors_in_words(result: SandboxResult, error: str | None) -> None:
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None and error in result.error
