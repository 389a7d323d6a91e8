"""Settings base: one pydantic-settings class per service, env prefix per service.

A service subclasses `ServiceSettings`, sets `service_name`, its env prefix
and default port, and declares one `<short>_url` field per upstream it calls
(`rag_url` for rag_svc, ...). Settings are built once at start-up and
injected; tests construct them directly instead of patching the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.topology import REDIS_PORT, SERVICES

__all__ = [
    "EmbeddingDtype",
    "Port",
    "ServiceSettings",
    "default_url",
    "mmap_threshold_field",
    "redact_url",
    "redis_url_field",
    "url_with_password",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# The sentence embedder's compute dtype: `auto` is bf16 where the CPU runs it fast (AMX).
EmbeddingDtype = Literal["auto", "float32", "bfloat16"]
Port = Annotated[int, Field(ge=1, le=65535, description="Port to listen on.")]


def default_url(service_name: str) -> str:
    """The loopback URL a service listens on under `make up` by default."""
    return f"http://127.0.0.1:{SERVICES[service_name].port}"


def url_with_password(url: str, password: str) -> str:
    """`url` with its password set to `password` (any user name kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{parts.username or ''}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redis_url_field(prefix: str) -> Any:
    """A Redis URL setting read from `<PREFIX>REDIS_URL`, falling back to `REDIS_URL`.

    Its password may instead come from the file named by `REDIS_PASSWORD_FILE`
    (a compose secret): `ServiceSettings` puts it into the URL.
    """
    return Field(
        default=f"redis://127.0.0.1:{REDIS_PORT}/0",
        validation_alias=AliasChoices(f"{prefix}REDIS_URL", "REDIS_URL", "redis_url"),
        description="Redis URL (redis://host:port/db).",
    )


def mmap_threshold_field(default: int, note: str) -> Any:
    """The `malloc_mmap_threshold_bytes` setting with a service's own default (common/heap.py)."""
    return Field(
        default,
        ge=0,
        le=32 * 1024 * 1024,
        description="Blocks this large or larger are mmapped and unmapped when freed (glibc). "
        + note,
    )


class ServiceSettings(BaseSettings):
    """What every service is configured with; subclasses add their own fields."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    service_name: ClassVar[str]

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: Port
    log_level: LogLevel = "INFO"
    log_json: bool = Field(True, description="JSON log lines (false: plain text).")
    data_dir: Path = Field(Path("var"), description="Where models, indexes and state live.")
    redis_password_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_PASSWORD_FILE", "redis_password_file"),
        description="File holding Redis's password (e.g. /run/secrets/redis_password); "
        "it replaces any password in the Redis URL.",
    )

    request_timeout_s: float = Field(30.0, gt=0, description="Default upstream call timeout.")
    connect_timeout_s: float = Field(2.0, gt=0, description="Upstream connect timeout.")
    retry_max: int = Field(2, ge=0, le=10, description="Retries of idempotent upstream calls.")
    retry_base_backoff_s: float = Field(0.1, ge=0)
    retry_max_backoff_s: float = Field(2.0, ge=0)
    breaker_failure_threshold: int = Field(5, ge=1, description="Failures that open a circuit.")
    breaker_reset_s: float = Field(5.0, gt=0, description="Open-circuit time before a trial.")
    readiness_timeout_s: float = Field(2.0, gt=0, description="Timeout of each readiness probe.")

    # What one HTTP connection may cost the server (common/runner.py enforces them).
    http_max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Request line + headers larger than this: 431."
    )
    http_max_headers: int = Field(100, ge=8, description="More header fields than this: 431.")
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="Time to receive a request's headers (408 and close after)."
    )
    http_body_timeout_s: float = Field(
        60.0, gt=0, description="Time to receive a request's whole body (408 and close after)."
    )
    http_keepalive_timeout_s: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    http_max_concurrency: int = Field(
        1000, ge=1, description="Open connections or requests beyond this are answered 503."
    )
    malloc_mmap_threshold_bytes: int = mmap_threshold_field(
        0,
        "0: glibc's dynamic threshold, fastest for model serving, under which a process keeps "
        "the peak of the input shapes it has seen; rag_svc sets 131072 (common/heap.py).",
    )

    @field_validator("*", mode="after")
    @classmethod
    def _urls_are_http(cls, value: object, info: object) -> object:
        name = getattr(info, "field_name", "")
        if name.endswith("_url") and not name.startswith("redis") and value is not None:
            text = str(value)
            if not text.startswith(("http://", "https://")):
                prefix = cls.model_config.get("env_prefix", "")
                raise ValueError(
                    f"{prefix}{name.upper()} must be an http:// or https:// URL, got {text!r}"
                )
            return text.rstrip("/")
        return value

    @model_validator(mode="after")
    def _redis_password_from_file(self) -> ServiceSettings:
        url = getattr(self, "redis_url", None)
        if self.redis_password_file is None or url is None:
            return self
        try:
            password = self.redis_password_file.read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"REDIS_PASSWORD_FILE {self.redis_password_file} cannot be read: {exc.strerror}"
            ) from None
        if not password:
            raise ValueError(f"REDIS_PASSWORD_FILE {self.redis_password_file} is empty")
        self.redis_url = url_with_password(str(url), password)
        return self

    def upstream_urls(self) -> dict[str, str]:
        """Base URL of each service this one calls, by service name."""
        spec = SERVICES[self.service_name]
        return {
            name: str(getattr(self, f"{SERVICES[name].short}_url"))
            for name in spec.upstream_services
        }
