"""Settings of router_svc (env prefix `ROUTER_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["RouterSettings"]


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore")

    service_name: ClassVar[str] = "router_svc"

    port: Port = 8001
    memory_url: str = default_url("memory_svc")
    rag_url: str = default_url("rag_svc")
    reasoning_url: str = default_url("reasoning_svc")
    creative_url: str = default_url("creative_svc")
    tools_url: str = default_url("tools_svc")
    moe_url: str = default_url("moe_svc")
