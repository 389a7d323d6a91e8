"""Settings of gateway (env prefix `GATEWAY_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url, redis_url_field
from common.topology import SERVICES

__all__ = ["GatewaySettings"]


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: ClassVar[str] = "gateway"

    port: Port = 8000
    router_url: str = default_url("router_svc")
    memory_url: str = default_url("memory_svc")
    rag_url: str = default_url("rag_svc")
    creative_url: str = default_url("creative_svc")
    moe_url: str = default_url("moe_svc")
    # Not called by the gateway, only probed: its /readyz covers all seven services.
    tools_url: str = default_url("tools_svc")
    reasoning_url: str = default_url("reasoning_svc")
    redis_url: str = redis_url_field("GATEWAY_")

    def service_urls(self) -> dict[str, str]:
        """Base URL of every other service, by name (what `/readyz` aggregates)."""
        return {
            name: str(getattr(self, f"{spec.short}_url"))
            for name, spec in SERVICES.items()
            if name != self.service_name
        }
