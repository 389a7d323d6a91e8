"""The launcher's configuration: ports, hosts, Redis and each service's environment."""

from __future__ import annotations

import pytest

from common.settings import redact_url
from common.topology import SERVICES
from launcher.config import LaunchConfig
from launcher.process import _readable


def test_defaults_follow_design() -> None:
    config = LaunchConfig.from_env({})
    assert config.ports == {name: spec.port for name, spec in SERVICES.items()}
    assert config.redis_port == 6379
    assert config.host == "127.0.0.1"
    assert config.redis_url == "redis://127.0.0.1:6379/0"


def test_port_base_moves_every_port_and_one_can_be_overridden() -> None:
    config = LaunchConfig.from_env({"PLATFORM_PORT_BASE": "9000", "RAG_PORT": "9555"})
    assert config.ports["gateway"] == 9000
    assert config.ports["reasoning_svc"] == 9007
    assert config.ports["rag_svc"] == 9555
    assert config.redis_port == 9079


def test_external_redis_is_passed_to_services() -> None:
    config = LaunchConfig.from_env({"REDIS_URL": "redis://cache:6379/3"})
    assert config.external_redis_url == "redis://cache:6379/3"
    assert config.service_env("memory_svc")["REDIS_URL"] == "redis://cache:6379/3"


def test_service_env_points_every_upstream_at_the_launched_ports() -> None:
    config = LaunchConfig.from_env({"PLATFORM_PORT_BASE": "9000", "PLATFORM_HOST": "0.0.0.0"})
    env = config.service_env("router_svc")
    assert env["ROUTER_HOST"] == "0.0.0.0"
    assert env["ROUTER_PORT"] == "9001"
    # Bound to all interfaces, but reached over loopback.
    assert env["ROUTER_RAG_URL"] == "http://127.0.0.1:9003"
    assert env["ROUTER_TOOLS_URL"] == "http://127.0.0.1:9004"
    gateway_env = config.service_env("gateway")
    assert gateway_env["GATEWAY_REASONING_URL"] == "http://127.0.0.1:9007"
    assert gateway_env["REDIS_URL"] == "redis://127.0.0.1:9079/0"


@pytest.mark.parametrize(
    ("name", "value"),
    [("PLATFORM_PORT_BASE", "abc"), ("MOE_PORT", "70000"), ("PLATFORM_READY_TIMEOUT_S", "-1")],
)
def test_bad_values_stop_with_a_message(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=name):
        LaunchConfig.from_env({name: value})


def test_json_log_lines_are_shown_readably() -> None:
    line = (
        '{"ts": "2026-11-28T14:11:48.191Z", "level": "info", "service": "gateway", '
        '"logger": "common.access", "request_id": "0f1d6fae9b6b", "msg": "GET /x 200", '
        '"status": 200}'
    )
    assert _readable(line) == "14:11:48.191 INFO    [0f1d6fae] GET /x 200 status=200"
    assert _readable("plain redis line") == "plain redis line"


def test_the_local_redis_password_reaches_services_in_their_url() -> None:
    config = LaunchConfig.from_env({})
    config.redis_password = "p/ss:w@rd"
    url = config.service_env("gateway")["REDIS_URL"]
    assert url == "redis://:p%2Fss%3Aw%40rd@127.0.0.1:6379/0"


def test_urls_are_printed_without_their_password() -> None:
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://app:hunter2@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
