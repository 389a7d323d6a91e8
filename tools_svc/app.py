"""The tools_svc app: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from common.health import ReadinessCheck
from common.http_client import ServiceClient
from common.netguard import AddressPolicy, Resolver, system_resolver
from common.service import create_service_app
from tools_svc.api import document_tools, router
from tools_svc.audit import AuditLog
from tools_svc.sandbox import PythonSandbox, SandboxLimits
from tools_svc.settings import ToolsSettings
from tools_svc.tools import TOOL_TYPES, build_registry
from tools_svc.tools.http_get import SafeFetcher

__all__ = ["create_app"]


def sandbox_from_settings(settings: ToolsSettings) -> PythonSandbox:
    limits = SandboxLimits(
        timeout_s=settings.python_timeout_s,
        cpu_s=settings.python_cpu_s,
        memory_mb=settings.python_memory_mb,
        processes=settings.python_max_processes,
        open_files=settings.python_max_open_files,
        file_mb=settings.python_max_file_mb,
        workdir_mb=settings.python_workdir_mb,
        output_bytes=settings.python_output_bytes,
    )
    return PythonSandbox(
        limits, concurrency=settings.python_concurrency, uid_base=settings.python_uid_base
    )


def create_app(
    settings: ToolsSettings,
    *,
    resolver: Resolver = system_resolver,
    http_transport: httpx.AsyncBaseTransport | None = None,
    sandbox: PythonSandbox | None = None,
) -> FastAPI:
    """Build tools_svc; `resolver` and `http_transport` are http_get's (tests inject them,
    and `sandbox`, which is otherwise built from the settings).

    It is ready without the python sandbox (the other tools still work); its
    `/readyz` then shows `python_sandbox` down with the reason.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        python_sandbox = sandbox or sandbox_from_settings(settings)
        await python_sandbox.probe()

        async def sandbox_check() -> None:
            if python_sandbox.unavailable_reason:
                raise RuntimeError(python_sandbox.unavailable_reason)

        app.state.readiness_checks.append(
            ReadinessCheck("python_sandbox", sandbox_check, required=False)
        )
        fetcher = SafeFetcher(
            allowed_hosts=settings.http_allowed_hosts,
            policy=AddressPolicy(settings.http_allowed_networks),
            resolver=resolver,
            transport=http_transport,
            max_bytes=settings.http_max_bytes,
            max_redirects=settings.http_max_redirects,
            timeout_s=settings.http_timeout_s,
        )

        def rag_client() -> ServiceClient:
            client: ServiceClient = app.state.upstreams["rag_svc"]
            return client

        audit_path = settings.data_dir / "tools_audit.jsonl" if settings.audit_log else None
        app.state.sandbox = python_sandbox
        app.state.registry = build_registry(
            settings,
            sandbox=python_sandbox,
            fetcher=fetcher,
            rag_client=rag_client,
            audit=AuditLog(audit_path),
        )
        try:
            yield
        finally:
            await fetcher.aclose()

    app = create_service_app(
        settings,
        title="tools_svc",
        description=(
            "Tool registry and sandboxed execution (code, calculator, search, HTTP, planner)."
        ),
        lifespan=lifespan,
    )
    app.include_router(router)
    document_tools(app, TOOL_TYPES)
    return app
