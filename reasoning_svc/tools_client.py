"""tools_svc as the strategies use it: list the tools, run one, never raise for a tool's failure.

Everything that goes wrong with a tool call (an unknown tool, arguments the
tool refuses, the tool's own error, tools_svc being down) comes back as an
`Observation` with `error` set, because ReAct and PAL show failures to the
model as observations instead of failing the run.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from common.contracts.tools import InvokeResponse, ToolList, ToolSpec
from common.errors import ServiceError
from common.http_client import ServiceClient

__all__ = ["Observation", "ToolRunner", "ToolsClient"]

# Tool names go into a URL path: nothing but what tools_svc names its tools with.
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


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
        self._specs: list[ToolSpec] | None = None

    async def specs(self) -> list[ToolSpec]:
        """The tools tools_svc lists (fetched once; an empty list while it is down)."""
        if self._specs is None:
            try:
                body = await self._client.get_json("/v1/tools", timeout_s=self.timeout_s)
            except ServiceError:
                return []
            self._specs = ToolList.model_validate(body).data
        return self._specs

    async def invoke(self, tool: str, arguments: dict[str, Any]) -> Observation:
        started = time.perf_counter()
        if not _TOOL_NAME.match(tool):
            return Observation(tool, arguments, None, f"{tool!r} is not a tool name", 0.0)
        try:
            body = await self._client.post_json(
                f"/v1/tools/{tool}/invoke", {"arguments": arguments}, timeout_s=self.timeout_s
            )
            result = InvokeResponse.model_validate(body)
        except ServiceError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Observation(tool, arguments, None, exc.message, round(elapsed, 1))
        return Observation(tool, arguments, result.output, result.error, result.duration_ms)
