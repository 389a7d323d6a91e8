"""Settings of reasoning_svc (env prefix `REASONING_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["ReasoningSettings"]


class ReasoningSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REASONING_", extra="ignore")

    service_name: ClassVar[str] = "reasoning_svc"

    port: Port = 8007
    moe_url: str = default_url("moe_svc")
    tools_url: str = default_url("tools_svc")
