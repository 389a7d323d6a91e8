"""What the launcher starts where, read from the environment."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from common.topology import REDIS_PORT, SERVICES

__all__ = ["LaunchConfig"]

# With PLATFORM_PORT_BASE=B, service ports are B + (default - 8000) and Redis is B + 79.
_REDIS_OFFSET = 79


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {raw!r}")
    return value


def _upstream_urls(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("PLATFORM_UPSTREAM_URLS") or "{}"
    try:
        urls = json.loads(raw)
    except ValueError:
        urls = None
    if not isinstance(urls, dict) or not all(
        name in SERVICES and isinstance(url, str) and url.startswith("http://")
        for name, url in urls.items()
    ):
        raise SystemExit(
            "PLATFORM_UPSTREAM_URLS must be a JSON object from service name to an http:// URL, "
            f'e.g. {{"moe_svc": "http://127.0.0.1:9102"}}; got {raw!r}'
        )
    return {str(name): str(url) for name, url in urls.items()}


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)


@dataclass
class LaunchConfig:
    host: str
    ports: dict[str, int]
    redis_port: int
    external_redis_url: str | None
    var_dir: Path
    ready_timeout_s: float
    restart_backoff_s: float
    restart_backoff_max_s: float
    python: str = sys.executable
    base_env: dict[str, str] = field(default_factory=dict)
    # The embedded Redis's password (launcher.secrets), set before anything starts.
    redis_password: str | None = None
    # Where callers reach a service when not at its own port (a proxy in front, in fault tests).
    upstream_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchConfig:
        env = dict(os.environ if env is None else env)
        base = env.get("PLATFORM_PORT_BASE")
        port_base = _port(env, "PLATFORM_PORT_BASE", 8000) if base else None
        ports = {}
        for name, spec in SERVICES.items():
            default = spec.port if port_base is None else port_base + spec.port - 8000
            ports[name] = _port(env, f"{spec.env_prefix}PORT", default)
        redis_default = REDIS_PORT if port_base is None else port_base + _REDIS_OFFSET
        return cls(
            host=env.get("PLATFORM_HOST") or "127.0.0.1",
            ports=ports,
            redis_port=_port(env, "REDIS_PORT", redis_default),
            external_redis_url=env.get("REDIS_URL") or None,
            var_dir=Path(env.get("PLATFORM_VAR_DIR") or "var").resolve(),
            ready_timeout_s=_float(env, "PLATFORM_READY_TIMEOUT_S", 600.0),
            restart_backoff_s=_float(env, "PLATFORM_RESTART_BACKOFF_S", 1.0),
            restart_backoff_max_s=_float(env, "PLATFORM_RESTART_BACKOFF_MAX_S", 30.0),
            base_env=env,
            upstream_urls=_upstream_urls(env),
        )

    @property
    def redis_url(self) -> str:
        """The URL services reach Redis at; it carries the password: never print it."""
        if self.external_redis_url:
            return self.external_redis_url
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self._client_host}:{self.redis_port}/0"

    @property
    def _client_host(self) -> str:
        # A service bound to every interface is still reached on loopback.
        return "127.0.0.1" if self.host in {"0.0.0.0", ""} else self.host

    def url(self, service: str) -> str:
        host = self._client_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.ports[service]}"

    def service_env(self, name: str) -> dict[str, str]:
        """The environment of service `name`: host, port, data dir and every upstream URL."""
        spec = SERVICES[name]
        prefix = spec.env_prefix
        env = dict(self.base_env)
        env.update(
            {
                f"{prefix}HOST": self.host,
                f"{prefix}PORT": str(self.ports[name]),
                f"{prefix}DATA_DIR": str(self.var_dir),
                "REDIS_URL": self.redis_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        # Every URL field of every service is set, so probe-only ones are covered too;
        # settings ignore what they do not declare.
        for other, other_spec in SERVICES.items():
            if other != name:
                url = self.upstream_urls.get(other) or self.url(other)
                env[f"{prefix}{other_spec.short.upper()}_URL"] = url
        return env
