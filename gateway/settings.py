"""Settings of gateway (env prefix `GATEWAY_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import Port, ServiceSettings, default_url, redis_url_field
from common.topology import SERVICES

__all__ = ["DEFAULT_MODEL_ALIASES", "GatewaySettings"]

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# OpenAI's default names, so that clients left at them reach the platform's models.
# `default:<kind>`: the default model of that kind (chat: the first model moe_svc lists).
DEFAULT_MODEL_ALIASES: dict[str, str] = {
    "gpt-4o-mini": "default:chat",
    "gpt-3.5-turbo": "default:chat",
    "text-embedding-3-small": "default:embedding",
    "text-embedding-ada-002": "default:embedding",
    "sentence-transformers/all-MiniLM-L6-v2": "default:embedding",
    "dall-e-2": "default:image",
    "dall-e-3": "default:image",
}
_MODEL_KINDS = ("chat", "embedding", "image")


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: ClassVar[str] = "gateway"

    port: Port = 8000
    router_url: str = default_url("router_svc")
    memory_url: str = default_url("memory_svc")
    rag_url: str = default_url("rag_svc")
    creative_url: str = default_url("creative_svc")
    moe_url: str = default_url("moe_svc")
    model_engines: ModelEngines = model_engines_field("GATEWAY_")
    default_model: str = default_model_field("GATEWAY_")
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
    max_images_per_request: int = Field(
        8, ge=0, le=64, description="Image parts per chat request (400 too_many_images above)."
    )
    max_image_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest image part, decoded (400 image_too_large above; the body limit "
        "applies first).",
    )
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Largest image part in width x height, read from its header before it is "
        "decoded (400 image_too_large above).",
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
    rollout_load_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Timeout of moe_svc loading or promoting a model version (a rollout).",
    )
    models_timeout_s: float = Field(
        2.0, gt=0, description="Timeout of moe_svc's model list (GET /v1/models)."
    )
    models_cache_s: float = Field(
        30.0,
        ge=0,
        description="How long moe_svc's model list is kept (an unknown id asks again).",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_ALIASES),
        description="Alias -> served model id or default:chat|embedding|image (JSON map; "
        "replaces the defaults, {}: none). Defaults: OpenAI's gpt-4o-mini, gpt-3.5-turbo, "
        "text-embedding-3-small, text-embedding-ada-002, dall-e-2, dall-e-3.",
    )
    image_url_ttl_s: int = Field(
        3600,
        ge=1,
        description="Life of a signed image URL (response_format url); the image is deleted "
        "after it.",
    )
    image_url_secret: SecretStr | None = Field(
        None,
        description="HMAC key of image URLs (32+ characters); unset: a random one kept in "
        "<data_dir>/gateway/image_url_secret.",
    )
    image_url_secret_file: Path | None = Field(
        None, description="A file holding the image URL key instead (e.g. a compose secret)."
    )
    public_base: str | None = Field(
        None,
        description="Scheme, host and path prefix of the image URLs given to clients, such as "
        "a reverse proxy's public HTTPS address (unset: what the client called).",
    )

    @field_validator(
        "bootstrap_key",
        "bootstrap_key_file",
        "image_url_secret",
        "image_url_secret_file",
        "public_base",
        mode="before",
    )
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
        if self.image_url_secret is not None and self.image_url_secret_file is not None:
            raise ValueError(
                "set GATEWAY_IMAGE_URL_SECRET or GATEWAY_IMAGE_URL_SECRET_FILE, not both"
            )
        if self.image_url_secret is not None and len(self.image_url_secret) < 32:
            raise ValueError("GATEWAY_IMAGE_URL_SECRET must hold at least 32 characters")
        return self

    @field_validator("public_base")
    @classmethod
    def _public_base_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"GATEWAY_PUBLIC_BASE must be an http:// or https:// URL, got {value!r}"
            )
        return None if value is None else value.rstrip("/")

    @field_validator("model_aliases")
    @classmethod
    def _aliases_name_models(cls, aliases: dict[str, str]) -> dict[str, str]:
        for alias, target in aliases.items():
            if not alias or alias == "auto":
                raise ValueError(f"alias {alias!r} is not allowed (empty, or the pipeline's id)")
            kind = target.removeprefix("default:")
            if target.startswith("default:") and kind not in _MODEL_KINDS:
                raise ValueError(
                    f"alias {alias!r}: {target!r} names no kind (use default:chat, "
                    "default:embedding or default:image)"
                )
            if target in aliases:
                raise ValueError(f"alias {alias!r} names another alias ({target!r})")
        return aliases

    def read_bootstrap_key(self) -> str | None:
        """The bootstrap key from the setting or its file (None when neither is set)."""
        return _secret_or_file(self.bootstrap_key, self.bootstrap_key_file)

    def read_image_url_secret(self) -> bytes | None:
        """The image URL key from the setting or its file (None when neither is set)."""
        secret = _secret_or_file(self.image_url_secret, self.image_url_secret_file)
        return None if secret is None else secret.encode()

    def service_urls(self) -> dict[str, str]:
        """Base URL of every other service, by name (what `/readyz` aggregates)."""
        return {
            name: str(getattr(self, f"{spec.short}_url"))
            for name, spec in SERVICES.items()
            if name != self.service_name
        }


def _secret_or_file(secret: SecretStr | None, path: Path | None) -> str | None:
    # Read once at start-up, before serving; never logged.
    if secret is not None:
        return secret.get_secret_value().strip()
    if path is not None:
        return path.read_text().strip()
    return None
