"""tools_svc's routes: list the tools the caller may use, invoke one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from common.caller import current_caller
from common.contracts.tools import InvokeRequest, InvokeResponse, ToolList
from common.disconnect import cancel_on_disconnect
from tools_svc.deps import RegistryDep

__all__ = ["router"]

router = APIRouter(prefix="/v1/tools", tags=["tools"])


@router.get("", response_model=ToolList)
async def list_tools(registry: RegistryDep) -> ToolList:
    return ToolList(data=registry.specs(current_caller()))


@router.post("/{name}/invoke", response_model=InvokeResponse)
async def invoke_tool(
    name: str, body: InvokeRequest, registry: RegistryDep, request: Request
) -> InvokeResponse | Response:
    # A caller that leaves stops its tool: a cancelled sandbox run kills its process group.
    return await cancel_on_disconnect(
        request, registry.invoke(name, body.arguments, current_caller())
    )
