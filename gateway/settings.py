"""Settings of gateway (env prefix `GATEWAY_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
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

    auth_required: bool | None = Field(
        None,
        description="Require an API key on /v1 routes: true, false, or unset (required "
        "as soon as one key exists in Redis).",
    )
    rpm_limit: int = Field(
        600, ge=0, description="Requests per minute per API key (0: unlimited); a key may override."
    )
    tpm_limit: int = Field(
        200_000,
        ge=0,
        description="Tokens per minute per API key (0: unlimited); a key may override.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS (JSON list; ["*"]: any).'
    )
    chat_timeout_s: float = Field(
        300.0, gt=0, description="Timeout of chat completions (router_svc, moe_svc)."
    )
    images_timeout_s: float = Field(
        300.0, gt=0, description="Timeout of image generation (creative_svc)."
    )
    passthrough_timeout_s: float = Field(
        60.0, gt=0, description="Timeout of embeddings, documents and feedback calls."
    )
    models_timeout_s: float = Field(
        2.0, gt=0, description="Timeout of moe_svc's model list (GET /v1/models)."
    )

    def service_urls(self) -> dict[str, str]:
        """Base URL of every other service, by name (what `/readyz` aggregates)."""
        return {
            name: str(getattr(self, f"{spec.short}_url"))
            for name, spec in SERVICES.items()
            if name != self.service_name
        }
