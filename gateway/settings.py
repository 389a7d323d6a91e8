"""Settings of gateway (env prefix `GATEWAY_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url, redis_url_field
from common.topology import SERVICES

__all__ = ["GatewaySettings"]

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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

    auth_required: bool = Field(
        True,
        description="Require an API key on /v1 routes (with no key in Redis every call gets "
        "503). false: development only, on a loopback host: calls run without a key as tenant "
        "default, role member.",
    )
    bootstrap_key: SecretStr | None = Field(
        None,
        description="An admin key (sk-gw-<hex id>-<secret of 32+ characters>) registered on start "
        "(its hash only) as tenant default with every scope, unless already known.",
    )
    bootstrap_key_file: Path | None = Field(
        None,
        description="A file holding the bootstrap key instead (e.g. a compose secret).",
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

    @field_validator("bootstrap_key", "bootstrap_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes an unset variable as an empty string.
        return None if value == "" else value

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Self:
        if not self.auth_required and self.host not in _LOOPBACK_HOSTS:
            raise ValueError(
                "GATEWAY_AUTH_REQUIRED=false runs every call without a key: it is allowed only "
                f"when GATEWAY_HOST is a loopback address ({', '.join(sorted(_LOOPBACK_HOSTS))})"
            )
        if self.bootstrap_key is not None and self.bootstrap_key_file is not None:
            raise ValueError("set GATEWAY_BOOTSTRAP_KEY or GATEWAY_BOOTSTRAP_KEY_FILE, not both")
        return self

    def read_bootstrap_key(self) -> str | None:
        """The bootstrap key from the setting or its file (None when neither is set)."""
        if self.bootstrap_key is not None:
            return self.bootstrap_key.get_secret_value().strip()
        if self.bootstrap_key_file is not None:
            # Read once at start-up, before serving.
            return self.bootstrap_key_file.read_text().strip()
        return None

    def service_urls(self) -> dict[str, str]:
        """Base URL of every other service, by name (what `/readyz` aggregates)."""
        return {
            name: str(getattr(self, f"{spec.short}_url"))
            for name, spec in SERVICES.items()
            if name != self.service_name
        }
