"""Settings of rag_svc (env prefix `RAG_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["RagSettings"]


class RagSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    service_name: ClassVar[str] = "rag_svc"

    port: Port = 8003
    moe_url: str = default_url("moe_svc")
