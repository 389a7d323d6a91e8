"""Settings of creative_svc (env prefix `CREATIVE_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["CreativeSettings"]


class CreativeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CREATIVE_", extra="ignore")

    service_name: ClassVar[str] = "creative_svc"

    port: Port = 8006
    moe_url: str = default_url("moe_svc")
