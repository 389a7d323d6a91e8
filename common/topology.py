"""The services of the platform, their default ports and who calls whom.

The single source for the launcher, the gateway's readiness and the tests
that check docker-compose.yml against it (docs/architecture.md draws it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REDIS", "REDIS_PORT", "SERVICES", "ServiceSpec", "service", "start_order"]

REDIS = "redis"
REDIS_PORT = 6379


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # package and process name, e.g. "moe_svc"
    short: str  # settings prefix and URL field stem, e.g. "moe" -> MOE_*, moe_url
    port: int
    depends_on: tuple[str, ...]  # services (or "redis") this one calls

    @property
    def env_prefix(self) -> str:
        return f"{self.short.upper()}_"

    @property
    def upstream_services(self) -> tuple[str, ...]:
        return tuple(d for d in self.depends_on if d != REDIS)


# Who calls whom (docs/architecture.md), memory_svc -> moe_svc included (token counts, summaries).
SERVICES: dict[str, ServiceSpec] = {
    s.name: s
    for s in (
        ServiceSpec(
            "gateway",
            "gateway",
            8000,
            ("router_svc", REDIS, "memory_svc", "rag_svc", "creative_svc", "moe_svc"),
        ),
        ServiceSpec(
            "router_svc",
            "router",
            8001,
            ("memory_svc", "rag_svc", "reasoning_svc", "creative_svc", "tools_svc", "moe_svc"),
        ),
        ServiceSpec("moe_svc", "moe", 8002, ()),
        ServiceSpec("rag_svc", "rag", 8003, ("moe_svc",)),
        ServiceSpec("tools_svc", "tools", 8004, ("rag_svc",)),
        # moe_svc counts tokens and writes running summaries for context assembly.
        ServiceSpec("memory_svc", "memory", 8005, (REDIS, "rag_svc", "moe_svc")),
        ServiceSpec("creative_svc", "creative", 8006, ("moe_svc",)),
        ServiceSpec("reasoning_svc", "reasoning", 8007, ("moe_svc", "tools_svc")),
    )
}


def service(name: str) -> ServiceSpec:
    """Return the spec of service `name` (KeyError names the known ones)."""
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICES)}") from None


def start_order() -> list[str]:
    """Services in an order where each starts after everything it calls.

    Raises ValueError on a dependency cycle.
    """
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ValueError(f"dependency cycle: {' -> '.join((*path, name))}")
        state[name] = "visiting"
        for dep in SERVICES[name].upstream_services:
            visit(dep, (*path, name))
        state[name] = "done"
        order.append(name)

    for name in sorted(SERVICES, key=lambda n: SERVICES[n].port):
        visit(name, ())
    return order
