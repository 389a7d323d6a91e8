"""tools_svc's routes: list the tools the caller may use, invoke one.

One route invokes every tool (`POST /v1/tools/{name}/invoke`); the OpenAPI
shows it as one operation per tool, each with that tool's arguments schema,
so that clients and the schema-driven fuzzer send each tool what it takes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from common.caller import current_caller
from common.contracts.tools import InvokeRequest, InvokeResponse, ToolList
from common.disconnect import cancel_on_disconnect
from common.openapi import error_responses
from tools_svc.deps import RegistryDep
from tools_svc.registry import Tool

__all__ = ["document_tools", "router"]

INVOKE_PATH = "/v1/tools/{name}/invoke"

router = APIRouter(prefix="/v1/tools", tags=["tools"])


@router.get("", response_model=ToolList)
async def list_tools(registry: RegistryDep) -> ToolList:
    return ToolList(data=registry.specs(current_caller()))


@router.post("/{name}/invoke", response_model=InvokeResponse, responses=error_responses(403))
async def invoke_tool(
    name: str, body: InvokeRequest, registry: RegistryDep, request: Request
) -> InvokeResponse | Response:
    # A caller that leaves stops its tool: a cancelled sandbox run kills its process group.
    return await cancel_on_disconnect(
        request, registry.invoke(name, body.arguments, current_caller())
    )


def _tool_operation(generic: dict[str, Any], tool: type[Tool]) -> dict[str, Any]:
    """The generic invoke operation, narrowed to `tool`: no path name, its arguments."""
    operation = copy.deepcopy(generic)
    operation["operationId"] = f"invoke_{tool.name}"
    operation["summary"] = f"Invoke {tool.name}"
    operation["description"] = tool.description
    operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] != "name"]
    operation["responses"].pop("404", None)
    arguments = tool.arguments.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = arguments.pop("$defs", {})
    required = bool(arguments.get("required"))
    body = {
        "type": "object",
        "properties": {"arguments": arguments},
        "additionalProperties": False,
        **({"required": ["arguments"]} if required else {}),
    }
    operation["requestBody"] = {
        "required": required,
        "content": {"application/json": {"schema": body}},
    }
    return {"post": operation, "_defs": defs}


def document_tools(app: FastAPI, tools: Iterable[type[Tool]]) -> None:
    """Show the invoke route as one operation per tool in `app.openapi()`."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        schema = base()
        paths = schema["paths"]
        generic = paths.pop(INVOKE_PATH, None)
        if generic is not None:
            components = schema["components"]["schemas"]
            for tool in tools:
                item = _tool_operation(generic["post"], tool)
                components.update(item.pop("_defs"))
                paths[INVOKE_PATH.replace("{name}", tool.name)] = item
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
