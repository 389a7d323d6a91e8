"""The tools tools_svc serves; `build_registry` assembles them from settings."""

from __future__ import annotations

from collections.abc import Callable

from common.http_client import ServiceClient
from tools_svc.audit import AuditLog
from tools_svc.registry import Tool, ToolRegistry
from tools_svc.sandbox import PythonSandbox
from tools_svc.settings import ToolsSettings
from tools_svc.tools.calculator import CalculatorTool
from tools_svc.tools.clock import DatetimeNowTool
from tools_svc.tools.http_get import HttpGetTool, SafeFetcher
from tools_svc.tools.knowledge import KnowledgeSearchTool
from tools_svc.tools.planner import TrainingPlannerTool
from tools_svc.tools.python_exec import PythonTool
from tools_svc.tools.units import UnitConvertTool

__all__ = ["TOOL_TYPES", "build_registry"]

# Every tool tools_svc serves (build_registry makes one of each).
TOOL_TYPES: tuple[type[Tool], ...] = (
    PythonTool,
    KnowledgeSearchTool,
    HttpGetTool,
    CalculatorTool,
    DatetimeNowTool,
    UnitConvertTool,
    TrainingPlannerTool,
)


def build_registry(
    settings: ToolsSettings,
    *,
    sandbox: PythonSandbox,
    fetcher: SafeFetcher,
    rag_client: Callable[[], ServiceClient],
    audit: AuditLog,
) -> ToolRegistry:
    tools: list[Tool] = [
        PythonTool(sandbox),
        KnowledgeSearchTool(
            rag_client,
            default_collection=settings.knowledge_collection,
            # Past rag_svc's own call timeout, so that its 504 arrives first.
            timeout_s=settings.request_timeout_s + 1,
        ),
        HttpGetTool(fetcher),
    ]
    for quick in (CalculatorTool(), DatetimeNowTool(), UnitConvertTool(), TrainingPlannerTool()):
        quick.timeout_s = settings.tool_timeout_s
        tools.append(quick)
    return ToolRegistry(tools, audit, max_output_chars=settings.max_output_chars)
