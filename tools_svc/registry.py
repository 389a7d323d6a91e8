"""The tool registry: specs, scopes, argument validation, timeouts, output caps, audit.

A tool is a `Tool` subclass: a name, a description, a pydantic model of its
arguments (whose JSON Schema is the spec's `parameters`), the key scope it
needs (if any) and `run`. The registry lists to a caller only the tools its
scopes allow and refuses the others (403 naming the scope), validates
arguments against the model (400 naming the field), runs the tool under its
timeout, cuts long strings in the output with a marker, and records every
call, refused ones included, in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from common.caller import Caller
from common.contracts.tools import InvokeResponse, ToolFunction, ToolSpec
from common.errors import BadRequest, Forbidden, NotFound, ServiceError
from tools_svc.audit import AuditLog

__all__ = ["Tool", "ToolArguments", "ToolRegistry", "ToolResult", "truncate_output"]

logger = logging.getLogger("tools_svc.registry")


class ToolArguments(BaseModel):
    """Base of every tool's arguments: unknown keys and type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass
class ToolResult:
    output: Any
    # Set when the tool ran and failed (a timeout, a non-zero exit): the call
    # still answers 200, so an agent reads the failure as an observation.
    error: str | None = None


class Tool(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    arguments: ClassVar[type[ToolArguments]]
    # The key scope a caller needs to see and run the tool; None: every caller.
    scope: ClassVar[str | None] = None
    timeout_s: float = 10.0

    @abstractmethod
    async def run(self, arguments: Any) -> ToolResult:
        """Run the tool on validated arguments (an instance of `arguments`)."""

    def spec(self) -> ToolSpec:
        return ToolSpec(
            function=ToolFunction(
                name=self.name,
                description=self.description,
                parameters=_clean_schema(self.arguments.model_json_schema()),
            )
        )


def _clean_schema(schema: Any) -> Any:
    # Pydantic's titles repeat the field names; models read specs more easily without.
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


def truncate_output(value: Any, limit: int) -> tuple[Any, bool]:
    """Cut every string in `value` longer than `limit` characters, with a marker."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, False
        return value[:limit] + f"\n[... truncated {len(value) - limit} characters]", True
    if isinstance(value, dict):
        items = {k: truncate_output(v, limit) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(cut for _, cut in items.values())
    if isinstance(value, list):
        cut_items = [truncate_output(v, limit) for v in value]
        return [v for v, _ in cut_items], any(cut for _, cut in cut_items)
    return value, False


def _argument_error(exc: ValidationError) -> BadRequest:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    param = f"arguments.{loc}" if loc else "arguments"
    if first.get("type") == "extra_forbidden":
        message = f"Unknown argument '{param}'."
    else:
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid value')}."
    if exc.error_count() > 1:
        message += f" ({exc.error_count() - 1} more error(s) in these arguments.)"
    return BadRequest(message, param=param, code="invalid_arguments")


def _allows(caller: Caller, tool: Tool) -> bool:
    return tool.scope is None or caller.allows(tool.scope)


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool], audit: AuditLog, *, max_output_chars: int) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self.audit = audit
        self.max_output_chars = max_output_chars

    def specs(self, caller: Caller) -> list[ToolSpec]:
        """The tools `caller`'s scopes allow."""
        return [tool.spec() for tool in self._tools.values() if _allows(caller, tool)]

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools))
            raise NotFound(
                f"No tool named {name!r}; the tools are: {known}.", code="tool_not_found"
            ) from None

    async def invoke(self, name: str, arguments: dict[str, Any], caller: Caller) -> InvokeResponse:
        started = time.perf_counter()
        outcome, status, error_code = "failed", 500, None
        try:
            tool = self.get(name)
            if not _allows(caller, tool):
                raise Forbidden(
                    f"This API key lacks the '{tool.scope}' scope, which the {name} tool "
                    "needs; an admin can grant it to the key.",
                    code="missing_scope",
                )
            try:
                parsed = tool.arguments.model_validate(arguments)
            except ValidationError as exc:
                raise _argument_error(exc) from None
            try:
                async with asyncio.timeout(tool.timeout_s):
                    result = await tool.run(parsed)
            except TimeoutError:
                result = ToolResult(None, f"timed out after {tool.timeout_s:g} s")
                outcome, status = "timeout", 200
            else:
                outcome, status = ("error" if result.error else "ok"), 200
            output, truncated = truncate_output(result.output, self.max_output_chars)
            return InvokeResponse(
                tool=name,
                output=output,
                error=result.error,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                truncated=truncated,
            )
        except ServiceError as exc:
            status, error_code = exc.status_code, exc.code
            outcome = {400: "invalid", 403: "refused", 404: "not_found"}.get(status, "failed")
            raise
        finally:
            self.audit.record(
                caller=caller,
                tool=name,
                arguments=arguments,
                outcome=outcome,
                status=status,
                error_code=error_code,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
