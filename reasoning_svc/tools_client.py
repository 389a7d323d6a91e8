"""tools_svc as the strategies use it: list the tools, run one, never raise for a tool's failure.

Everything that goes wrong with a tool call (an unknown tool, arguments the
tool refuses, the tool's own error, tools_svc being down) comes back as an
`Observation` with `error` set, because ReAct and PAL show failures to the
model as observations instead of failing the run.

The caller's key scopes decide which tools a run may use (`tool_allowed`):
running code needs `tools:python`, fetching pages `tools:http`. tools_svc
lists and runs only those for the caller too; checking here as well keeps
a tool the key may not use out of the model's prompt.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from common.caller import TOOL_SCOPES, Caller, current_caller
from common.contracts.tools import InvokeResponse, ToolList, ToolSpec
from common.errors import ServiceError
from common.http_client import ServiceClient

__all__ = [
    "Observation",
    "ToolRunner",
    "ToolsClient",
    "missing_scope",
    "tool_allowed",
]

# Tool names go into a URL path: nothing but what tools_svc names its tools with.
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def tool_allowed(tool: str, caller: Caller | None = None) -> bool:
    """Whether the caller (of the request being served, by default) may use `tool`."""
    scope = TOOL_SCOPES.get(tool)
    return scope is None or (caller or current_caller()).allows(scope)


def missing_scope(tool: str) -> str:
    return f"this API key lacks the '{TOOL_SCOPES.get(tool)}' scope that {tool} needs"


@dataclass(frozen=True)
class Observation:
    tool: str
    arguments: dict[str, Any]
    output: Any
    error: str | None
    duration_ms: float


class ToolRunner(Protocol):
    async def specs(self) -> list[ToolSpec]: ...

    async def invoke(self, tool: str, arguments: dict[str, Any]) -> Observation: ...


class ToolsClient:
    def __init__(self, client: ServiceClient, timeout_s: float) -> None:
        self._client = client
        self.timeout_s = timeout_s
        # tools_svc lists per caller scopes: one listing per set of scopes.
        self._specs: dict[frozenset[str], list[ToolSpec]] = {}

    async def specs(self) -> list[ToolSpec]:
        """The tools tools_svc lists for the caller's scopes (fetched once per set of scopes;
        an empty list while it is down)."""
        scopes = current_caller().scopes
        if scopes not in self._specs:
            try:
                body = await self._client.get_json("/v1/tools", timeout_s=self.timeout_s)
            except ServiceError:
                return []
            self._specs[scopes] = ToolList.model_validate(body).data
        return [spec for spec in self._specs[scopes] if tool_allowed(spec.function.name)]

    async def invoke(self, tool: str, arguments: dict[str, Any]) -> Observation:
        started = time.perf_counter()
        if not _TOOL_NAME.match(tool):
            return Observation(tool, arguments, None, f"{tool!r} is not a tool name", 0.0)
        if not tool_allowed(tool):
            return Observation(tool, arguments, None, missing_scope(tool), 0.0)
        try:
            body = await self._client.post_json(
                f"/v1/tools/{tool}/invoke", {"arguments": arguments}, timeout_s=self.timeout_s
            )
            result = InvokeResponse.model_validate(body)
        except ServiceError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Observation(tool, arguments, None, exc.message, round(elapsed, 1))
        return Observation(tool, arguments, result.output, result.error, result.duration_ms)
