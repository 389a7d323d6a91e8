"""Settings of memory_svc (env prefix `MEMORY_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url, redis_url_field

__all__ = ["MemorySettings"]


class MemorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MEMORY_", extra="ignore")

    service_name: ClassVar[str] = "memory_svc"

    port: Port = 8005
    rag_url: str = default_url("rag_svc")
    redis_url: str = redis_url_field("MEMORY_")
