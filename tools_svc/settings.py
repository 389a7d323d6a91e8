"""Settings of tools_svc (env prefix `TOOLS_`)."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from common.settings import Port, ServiceSettings, default_url

__all__ = ["ToolsSettings"]

# Lists come from the environment as comma-separated text (JSON arrays also work).
CommaList = Annotated[list[str], NoDecode]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ToolsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TOOLS_", extra="ignore")

    service_name: ClassVar[str] = "tools_svc"

    port: Port = 8004
    rag_url: str = default_url("rag_svc")

    tool_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Wall-clock limit of one call of a tool without its own."
    )
    max_output_chars: int = Field(
        20_000, ge=100, description="Longer strings in a tool's output are cut, with a marker."
    )
    audit_log: bool = Field(
        True, description="Also append the audit log to tools_audit.jsonl in the data directory."
    )

    python_timeout_s: float = Field(
        10.0, gt=0, le=120, description="python: wall-clock limit (the largest a call may ask)."
    )
    python_cpu_s: int = Field(5, ge=1, le=120, description="python: CPU seconds.")
    python_memory_mb: int = Field(256, ge=64, description="python: address space, MiB.")
    python_max_processes: int = Field(
        16, ge=1, le=1024, description="python: processes and threads of the sandbox's uid."
    )
    python_max_open_files: int = Field(64, ge=16, description="python: open file descriptors.")
    python_max_file_mb: int = Field(16, ge=1, description="python: largest file it may write, MiB.")
    python_workdir_mb: int = Field(
        32, ge=1, description="python: size of its temporary working directory (tmpfs), MiB."
    )
    python_output_bytes: int = Field(
        65_536, ge=1024, description="python: stdout and stderr kept per stream; 16x more kills it."
    )
    python_concurrency: int = Field(
        4, ge=1, le=64, description="python: sandboxes running at once (more calls wait)."
    )
    python_uid_base: int = Field(
        2_000_000_000,
        ge=1000,
        le=4_000_000_000,
        description="python, service run as root: sandbox n runs as uid (and gid) base + n.",
    )

    http_allowed_hosts: CommaList = Field(
        default=[],
        description="http_get: hosts it may fetch (`example.com`, `*.example.com`); default none.",
    )
    http_allowed_networks: CommaList = Field(
        default=[],
        description=(
            "http_get: CIDRs exempt from the refusal of private and loopback addresses "
            "(cloud metadata stays refused)."
        ),
    )
    http_timeout_s: float = Field(10.0, gt=0, le=120, description="http_get: time for a fetch.")
    http_max_bytes: int = Field(
        1_000_000, ge=1024, description="http_get: body bytes read; the rest is cut."
    )
    http_max_redirects: int = Field(5, ge=0, le=20, description="http_get: redirects followed.")

    knowledge_collection: str | None = Field(
        None,
        description="knowledge_search: collection searched when a call names none; unset: "
        "every collection the caller may read (the shared wiki and its tenant's own).",
    )

    @field_validator("http_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        hosts = _split(value)
        if not isinstance(hosts, list):
            return hosts
        names = []
        for host in hosts:
            name = str(host).strip().lower().strip("[]").rstrip(".")
            # Bare names only: a scheme, path, port or credentials would never match a host.
            is_ipv6 = name.count(":") >= 2 and _is_ip(name)
            if not name or any(c in name for c in "/@ \t") or (":" in name and not is_ipv6):
                raise ValueError(f"TOOLS_HTTP_ALLOWED_HOSTS takes bare host names, got {host!r}")
            names.append(name)
        return names

    @field_validator("http_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        networks = _split(value)
        if isinstance(networks, list):
            for network in networks:
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError:
                    raise ValueError(
                        f"TOOLS_HTTP_ALLOWED_NETWORKS takes CIDRs, got {network!r}"
                    ) from None
        return networks
