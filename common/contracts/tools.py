"""tools_svc's wire models: tool specs (OpenAI function tools) and invocations.

`GET /v1/tools` answers a `ToolList`; `POST /v1/tools/{name}/invoke` takes an
`InvokeRequest` and answers an `InvokeResponse` (tools_svc's OpenAPI). A
failure of the tool itself (a snippet that exits non-zero, a timeout, a page
that answers 404) is an `InvokeResponse` with `error` set; arguments that do
not fit the tool's schema, and policy refusals, are HTTP errors in the shared
error shape.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["InvokeRequest", "InvokeResponse", "ToolFunction", "ToolList", "ToolSpec"]


class ToolFunction(BaseModel):
    name: str
    description: str
    # A JSON Schema (type "object") of the tool's arguments.
    parameters: dict[str, Any]


class ToolSpec(BaseModel):
    """One tool as an OpenAI function tool: `{type: "function", function: {...}}`."""

    type: Literal["function"] = "function"
    function: ToolFunction


class ToolList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ToolSpec]


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An object, or the JSON text of one as OpenAI tool calls carry it.
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _parse_json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        if value is None:
            return {}
        return value


class InvokeResponse(BaseModel):
    tool: str
    # The tool's result (a JSON value); null when it failed before producing one.
    output: Any = None
    # Why the tool failed, in words; null on success.
    error: str | None = None
    duration_ms: float
    # True when long strings in `output` were cut (each cut ends in a marker).
    truncated: bool = False
