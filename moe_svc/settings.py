"""Settings of moe_svc (env prefix `MOE_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings

__all__ = ["MoeSettings"]


class MoeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MOE_", extra="ignore")

    service_name: ClassVar[str] = "moe_svc"

    port: Port = 8002
