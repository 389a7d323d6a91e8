"""The model registry: which server answers a model id.

Every service that asks the core model (router_svc, reasoning_svc, rag_svc,
memory_svc, creative_svc, the gateway's direct model requests) reaches it
through a `ModelRegistry`. A model id maps to an OpenAI-compatible server:

- moe_svc (the platform's own engine) serves every id that no engine claims;
- the engines in `MODEL_ENGINES` (vLLM, llama.cpp's server, Ollama, TGI, a
  hosted API) serve the ids they list, for example

      MODEL_ENGINES='[{"name": "llamacpp", "base_url": "http://127.0.0.1:8080/v1",
                       "models": ["smollm2-q4"], "api_key_file": "/run/secrets/llm_key"}]'
      DEFAULT_MODEL=smollm2-q4

`DEFAULT_MODEL` is the model that `auto` answers with and that each service
uses when its own model setting is empty; unset, it is the first model moe_svc
lists. Both settings are read by every service under its own prefix too
(`ROUTER_MODEL_ENGINES` wins over `MODEL_ENGINES` for router_svc).

moe_svc's extensions (`return_experts`, `/v1/tokenize`, expert statistics) are
asked only of moe_svc: a route says whether its server has them
(`ModelRoute.platform`), and callers fall back (estimated token counts, no
expert heatmap) where it does not. Calls to an engine carry its key and never
the platform's caller headers (tenant, user): an engine is outside the
platform's trust boundary.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from common.breaker import CircuitBreaker
from common.chat import ChatClient
from common.health import ReadinessCheck
from common.http_client import ServiceClient
from common.metrics import ServiceMetrics
from common.retry import RetryPolicy

__all__ = [
    "ENGINE_UPSTREAM_PREFIX",
    "PLATFORM_EXTENSIONS",
    "ModelEngine",
    "ModelEngines",
    "ModelRegistry",
    "ModelRoute",
    "default_model_field",
    "model_engines_field",
]

# An engine's upstream name in logs, metrics and errors: "engine:<name>".
ENGINE_UPSTREAM_PREFIX = "engine:"
# moe_svc's request fields that other OpenAI-compatible servers do not know.
PLATFORM_EXTENSIONS = ("return_experts", "grammar")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class ModelEngine(BaseModel):
    """An OpenAI-compatible server outside the platform and the model ids it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name in logs, metrics and readiness (a-z, 0-9, '-').")
    base_url: str = Field(
        description="Its OpenAI API root, e.g. http://vllm:8000/v1 (a trailing /v1 is optional)."
    )
    models: tuple[str, ...] = Field(min_length=1, description="The model ids it serves.")
    api_key: SecretStr | None = Field(None, description="Bearer key (prefer api_key_file).")
    api_key_file: Path | None = Field(None, description="A file holding the bearer key.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one call to it.")

    @field_validator("name")
    @classmethod
    def _name_is_short(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"engine name {value!r} must be 1-40 of a-z, 0-9 and '-'")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"engine base_url {value!r} must be an http(s) URL")
        return value.rstrip("/").removesuffix("/v1")

    @field_validator("models")
    @classmethod
    def _models_are_named(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not m.strip() for m in value) or len(set(value)) != len(value):
            raise ValueError("engine models must be distinct, non-empty ids")
        return value

    def key(self) -> str | None:
        """The bearer key, from `api_key` or `api_key_file` (ValueError when unreadable)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is None:
            return None
        try:
            key = self.api_key_file.read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"engine {self.name}: api_key_file {self.api_key_file} cannot be read "
                f"({exc.strerror})"
            ) from None
        if not key:
            raise ValueError(f"engine {self.name}: api_key_file {self.api_key_file} is empty")
        return key


def model_engines_field(prefix: str) -> Any:
    """The external engines, from `<PREFIX>MODEL_ENGINES`, falling back to `MODEL_ENGINES`."""
    return Field(
        default=(),
        validation_alias=AliasChoices(f"{prefix}MODEL_ENGINES", "MODEL_ENGINES", "model_engines"),
        description="OpenAI-compatible engines beside moe_svc: a JSON list of {name, base_url, "
        "models, api_key_file} (docs/deployment.md).",
    )


def default_model_field(prefix: str) -> Any:
    """The default model, from `<PREFIX>DEFAULT_MODEL`, falling back to `DEFAULT_MODEL`."""
    return Field(
        default="",
        validation_alias=AliasChoices(f"{prefix}DEFAULT_MODEL", "DEFAULT_MODEL", "default_model"),
        description="The model `auto` and the services' own calls use when none is named "
        "(empty: the first model moe_svc lists).",
    )


def check_engines(engines: tuple[ModelEngine, ...]) -> tuple[ModelEngine, ...]:
    """Engines with distinct names and no model id served twice (ValueError otherwise)."""
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise ValueError(f"MODEL_ENGINES names repeat: {names}")
    seen: dict[str, str] = {}
    for engine in engines:
        for model in engine.models:
            if model in seen:
                raise ValueError(
                    f"model {model!r} is listed by engines {seen[model]} and {engine.name}"
                )
            seen[model] = engine.name
        engine.key()  # an unreadable key file fails at start, not at the first call
    return engines


# A settings field's type: engines checked together when the settings load.
ModelEngines = Annotated[tuple[ModelEngine, ...], AfterValidator(check_engines)]


@dataclass(frozen=True)
class ModelRoute:
    """Where a model id goes: the client of its server, the id to send, and whether the
    server is moe_svc (with the platform's extensions)."""

    client: ServiceClient
    model: str  # "" for moe_svc's first model, resolved by ChatClient
    platform: bool

    @property
    def upstream(self) -> str:
        return self.client.upstream

    def request_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """`body` as this server takes it: without moe_svc's extensions elsewhere."""
        if self.platform:
            return body
        return {k: v for k, v in body.items() if k not in PLATFORM_EXTENSIONS}


class ModelRegistry:
    """Model id -> server (see the module); one client per engine, made once."""

    def __init__(
        self,
        platform: ServiceClient,
        engines: tuple[ModelEngine, ...] = (),
        default_model: str = "",
        *,
        metrics: ServiceMetrics | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self.platform = platform
        self.engines = check_engines(tuple(engines))
        self.default_model = default_model
        self._clients: dict[str, ServiceClient] = {}
        self._by_model: dict[str, tuple[ModelEngine, ServiceClient]] = {}
        for engine in self.engines:
            key = engine.key()
            client = ServiceClient(
                f"{ENGINE_UPSTREAM_PREFIX}{engine.name}",
                engine.base_url,
                timeout_s=engine.timeout_s,
                connect_timeout_s=connect_timeout_s,
                retry=retry,
                breaker=CircuitBreaker(),
                metrics=metrics,
                headers={"Authorization": f"Bearer {key}"} if key else None,
                forward_caller=False,
            )
            self._clients[engine.name] = client
            for model in engine.models:
                self._by_model[model] = (engine, client)

    @classmethod
    def from_settings(
        cls, settings: Any, platform: ServiceClient, metrics: ServiceMetrics | None = None
    ) -> ModelRegistry:
        """From a settings object with `model_engines` and `default_model` fields."""
        return cls(
            platform,
            tuple(settings.model_engines),
            settings.default_model,
            metrics=metrics,
            connect_timeout_s=settings.connect_timeout_s,
        )

    def engine_clients(self) -> dict[str, ServiceClient]:
        """The engines' clients by upstream name ("engine:<name>")."""
        return {client.upstream: client for client in self._clients.values()}

    def external_models(self) -> dict[str, str]:
        """Model id -> engine name, for every id an engine serves."""
        return {model: engine.name for model, (engine, _) in self._by_model.items()}

    def route(self, model: str = "") -> ModelRoute:
        """The server of `model`; empty: the default model (else moe_svc's first)."""
        model = model or self.default_model
        found = self._by_model.get(model)
        if found is not None:
            return ModelRoute(found[1], model, platform=False)
        return ModelRoute(self.platform, model, platform=True)

    def chat(self, model: str = "", timeout_s: float = 60.0) -> ChatClient:
        """A ChatClient for `model` (see `route`)."""
        route = self.route(model)
        return ChatClient(route.client, route.model, timeout_s, extensions=route.platform)

    def readiness_checks(self, *, default_required: bool = True) -> list[ReadinessCheck]:
        """One check per engine (`GET /v1/models`); the default model's engine is required
        when `default_required`, so readiness says degraded without it."""
        default = self.route().upstream
        checks = []
        for client in self._clients.values():

            async def probe(client: ServiceClient = client) -> None:
                result = await client.probe("/v1/models")
                if not result.ok:
                    raise RuntimeError(result.error or "not answering /v1/models")

            required = default_required and client.upstream == default
            checks.append(ReadinessCheck(client.upstream, probe, required))
        return checks

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients.values()))
