"""Readiness of real services: the gateway's platform view and a service's own deps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import (
    RunningRedis,
    RunningServer,
    start_redis,
    start_service,
    wait_ready,
)
from tests.helpers.tiny_llm import make_tiny_llm


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="module")
def moe(log_dir: Path) -> Iterator[RunningServer]:
    # A tiny random model: this is about readiness, not about the default model's build.
    model = make_tiny_llm(log_dir / "tiny-llm")
    server = start_service("moe_svc", log_dir, env={"MOE_MODEL_DIR": str(model)})
    wait_ready(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rag(log_dir: Path, moe: RunningServer) -> Iterator[RunningServer]:
    server = start_service(
        "rag_svc", log_dir, upstreams={"moe_svc": moe.url}, env={"RAG_WIKI_ENABLED": "false"}
    )
    wait_ready(server)
    yield server
    server.stop()


def test_gateway_reports_each_service_and_redis(
    log_dir: Path, redis: RunningRedis, moe: RunningServer, rag: RunningServer
) -> None:
    gateway = start_service(
        "gateway",
        log_dir,
        upstreams={"moe_svc": moe.url, "rag_svc": rag.url},
        env={"GATEWAY_REDIS_URL": redis.url, "GATEWAY_READINESS_TIMEOUT_S": "1"},
    )
    try:
        response = httpx.get(f"{gateway.url}/readyz")
        # An orchestrator's probe: the gateway can take requests while services are down.
        own = httpx.get(f"{gateway.url}/readyz", params={"scope": "gateway"})
        bad_scope = httpx.get(f"{gateway.url}/readyz", params={"scope": "everything"})
    finally:
        gateway.stop()

    assert own.status_code == 200
    assert own.json()["status"] == "ready"
    assert set(own.json()["services"]) == {"redis"}
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"]["type"] == "invalid_request_error"

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    services = body["services"]
    assert set(services) == {
        "router_svc", "moe_svc", "rag_svc", "tools_svc",
        "memory_svc", "creative_svc", "reasoning_svc", "redis",
    }  # fmt: skip
    up = {name for name, s in services.items() if s["status"] == "up"}
    assert up == {"moe_svc", "rag_svc", "redis"}
    assert all(s["latency_ms"] >= 0 for s in services.values())
    assert "ConnectError" in services["tools_svc"]["error"]


def test_service_readiness_lists_optional_upstreams(moe: RunningServer, rag: RunningServer) -> None:
    body = httpx.get(f"{rag.url}/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["moe_svc"]["status"] == "up"
    assert body["checks"]["moe_svc"]["required"] is False


def test_memory_svc_is_not_ready_without_redis(log_dir: Path, tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    memory = start_service("memory_svc", log_dir, env={"MEMORY_REDIS_URL": redis.url})
    try:
        assert httpx.get(f"{memory.url}/readyz").status_code == 200
        redis.stop()
        response = httpx.get(f"{memory.url}/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["redis"]["status"] == "down"
        assert body["checks"]["redis"]["required"] is True
    finally:
        memory.stop()
        redis.stop()
