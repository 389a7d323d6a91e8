"""Settings: env prefixes, upstream URLs matching the topology, refusing bad values."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.settings import ServiceSettings
from common.topology import REDIS, SERVICES

SETTINGS_CLASSES = {
    "gateway": "GatewaySettings",
    "router_svc": "RouterSettings",
    "moe_svc": "MoeSettings",
    "rag_svc": "RagSettings",
    "tools_svc": "ToolsSettings",
    "memory_svc": "MemorySettings",
    "creative_svc": "CreativeSettings",
    "reasoning_svc": "ReasoningSettings",
}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{service}.settings")
    cls: type[ServiceSettings] = getattr(module, SETTINGS_CLASSES[service])
    return cls


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_service_has_settings_for_its_upstreams(service: str) -> None:
    cls = settings_class(service)
    settings = cls()
    spec = SERVICES[service]

    assert cls.service_name == service
    assert settings.port == spec.port
    assert set(settings.upstream_urls()) == set(spec.upstream_services)
    for name, url in settings.upstream_urls().items():
        assert url == f"http://127.0.0.1:{SERVICES[name].port}"
    assert ("redis_url" in cls.model_fields) == (REDIS in spec.depends_on)


def test_env_prefix_is_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_PORT", "9103")
    monkeypatch.setenv("RAG_MOE_URL", "http://moe.internal:9002/")
    monkeypatch.setenv("MOE_PORT", "9999")

    settings = settings_class("rag_svc")()
    assert settings.port == 9103
    assert settings.upstream_urls() == {"moe_svc": "http://moe.internal:9002"}


def test_redis_url_falls_back_to_shared_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://shared:6380/1")
    assert settings_class("memory_svc")().redis_url == "redis://shared:6380/1"

    monkeypatch.setenv("MEMORY_REDIS_URL", "redis://own:6381/2")
    assert settings_class("memory_svc")().redis_url == "redis://own:6381/2"


def test_non_http_upstream_url_is_refused_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTER_RAG_URL", "ftp://rag")
    with pytest.raises(ValidationError, match="ROUTER_RAG_URL must be an http"):
        settings_class("router_svc")()


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("port", 70000), ("retry_max", -1)])
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        overrides: dict[str, Any] = {field: value}
        settings_class("moe_svc")(**overrides)


def test_settings_are_built_by_tests_without_the_environment() -> None:
    settings = settings_class("gateway")(port=18000, router_url="http://127.0.0.1:18001")
    assert settings.port == 18000
    assert settings.upstream_urls()["router_svc"] == "http://127.0.0.1:18001"


def test_redis_password_file_puts_the_password_into_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "redis_password"
    secret.write_text("s3/cr:t\n")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    url = settings_class("memory_svc")().redis_url
    assert url == "redis://:s3%2Fcr%3At@redis:6379/0"
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="REDIS_PASSWORD_FILE"):
        settings_class("memory_svc")()
