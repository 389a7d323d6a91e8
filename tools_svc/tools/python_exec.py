"""`python`: run a snippet in the sandbox and return stdout, stderr and exit status."""

from __future__ import annotations

import signal
from typing import Any

from pydantic import Field

from common.caller import TOOL_SCOPES
from tools_svc.registry import Tool, ToolArguments, ToolResult
from tools_svc.sandbox import REAP_GRACE_S, PythonSandbox

__all__ = ["PythonTool"]


class PythonArguments(ToolArguments):
    code: str = Field(
        min_length=1,
        max_length=100_000,
        description="Python 3.11 source; print() what you want back. Standard library only.",
    )
    timeout_s: float | None = Field(
        None, gt=0, le=120, description="Wall-clock limit, capped at the service's limit."
    )


class PythonTool(Tool):
    name = "python"
    description = (
        "Run a Python 3.11 snippet in an isolated sandbox (no network, no access to the "
        "service's files or environment, CPU/memory/process/file limits, a temporary working "
        "directory) and return its stdout, stderr and exit status."
    )
    arguments = PythonArguments
    scope = TOOL_SCOPES["python"]

    def __init__(self, sandbox: PythonSandbox) -> None:
        self.sandbox = sandbox
        # The sandbox enforces its own deadline and kills; this only backs it up.
        self.timeout_s = sandbox.limits.timeout_s + 2 * REAP_GRACE_S + 5

    async def run(self, arguments: Any) -> ToolResult:
        args: PythonArguments = arguments
        result = await self.sandbox.run(args.code, args.timeout_s)
        name = signal.Signals(result.signal).name if result.signal else None
        output = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exit_code": result.exit_code,
            "signal": name,
            "timed_out": result.timed_out,
        }
        return ToolResult(output, result.error)
