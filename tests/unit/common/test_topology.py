"""The service graph of common/topology.py: ports, who calls whom, start order."""

from __future__ import annotations

from common.topology import REDIS, SERVICES, start_order


def test_ports_follow_design() -> None:
    assert {name: s.port for name, s in SERVICES.items()} == {
        "gateway": 8000,
        "router_svc": 8001,
        "moe_svc": 8002,
        "rag_svc": 8003,
        "tools_svc": 8004,
        "memory_svc": 8005,
        "creative_svc": 8006,
        "reasoning_svc": 8007,
    }


def test_dependencies_follow_design() -> None:
    deps = {name: set(s.depends_on) for name, s in SERVICES.items()}
    assert deps["router_svc"] == {
        "memory_svc",
        "rag_svc",
        "reasoning_svc",
        "creative_svc",
        "tools_svc",
        "moe_svc",
    }
    assert deps["reasoning_svc"] == {"moe_svc", "tools_svc"}
    assert deps["rag_svc"] == {"moe_svc"}
    assert deps["creative_svc"] == {"moe_svc"}
    assert deps["tools_svc"] == {"rag_svc"}
    assert deps["memory_svc"] == {REDIS, "rag_svc", "moe_svc"}
    assert deps["gateway"] == {
        "router_svc",
        REDIS,
        "memory_svc",
        "rag_svc",
        "creative_svc",
        "moe_svc",
    }
    assert deps["moe_svc"] == set()


def test_start_order_puts_every_service_after_its_upstreams() -> None:
    order = start_order()
    assert sorted(order) == sorted(SERVICES)
    assert order[0] == "moe_svc" and order[-1] == "gateway"
    for name in order:
        for dep in SERVICES[name].upstream_services:
            assert order.index(dep) < order.index(name), (dep, name)
