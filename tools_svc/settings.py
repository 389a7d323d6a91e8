"""Settings of tools_svc (env prefix `TOOLS_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["ToolsSettings"]


class ToolsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLS_", extra="ignore")

    service_name: ClassVar[str] = "tools_svc"

    port: Port = 8004
    rag_url: str = default_url("rag_svc")
