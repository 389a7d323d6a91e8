"""docker-compose.yml agrees with common/topology.py and the services' settings.

Each check is a function of the parsed compose file that returns a list of
problems, so the negative tests below can break a copy in memory and show the
checks notice. The Dockerfiles are checked in test_dockerfiles.py.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.settings import ServiceSettings
from common.topology import REDIS, REDIS_PORT, SERVICES
from launcher.secrets import COMPOSE_SECRETS
from scripts.settings_tables import settings_class

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The services that keep models, indexes or images: their data_dir is the `models` volume.
MODEL_SERVICES = ("moe_svc", "rag_svc", "creative_svc")

Compose = dict[str, Any]


def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def env_names(cls: type[ServiceSettings], field: str) -> list[str]:
    """The environment variables a settings field is read from."""
    alias = cls.model_fields[field].validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return [c.upper() for c in choices if isinstance(c, str)]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{field}".upper()]


def environment(spec: dict[str, Any]) -> dict[str, str]:
    """A compose service's `environment`, whether written as a mapping or a list."""
    env = spec.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_on(spec: dict[str, Any]) -> dict[str, Any]:
    deps = spec.get("depends_on") or {}
    # The list form has no condition; represent it so the condition check reports it.
    return {d: {} for d in deps} if isinstance(deps, list) else dict(deps)


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """Kahn's topological sort; returns the nodes left on a cycle (empty: acyclic)."""
    indegree = {node: 0 for node in graph}
    for deps in graph.values():
        for dep in deps:
            indegree.setdefault(dep, 0)
    for deps in graph.values():
        for dep in deps:
            indegree[dep] += 1
    queue = [node for node, n in indegree.items() if n == 0]
    while queue:
        node = queue.pop()
        for dep in graph.get(node, set()):
            indegree[dep] -= 1
            if indegree[dep] == 0:
                queue.append(dep)
    return sorted(node for node, n in indegree.items() if n > 0)


def container_ports(spec: dict[str, Any]) -> list[int]:
    """Container ports of a service's `ports`, short ("8000:8000") or long syntax."""
    ports: list[int] = []
    for entry in spec.get("ports") or []:
        target = entry.get("target") if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.append(int(str(target).split("/")[0]))
    return ports


def check_services(compose: Compose) -> list[str]:
    problems: list[str] = []
    services = compose.get("services") or {}
    for name in [*SERVICES, REDIS]:
        spec = services.get(name)
        if spec is None:
            problems.append(f"{name}: missing from docker-compose.yml")
            continue
        if name != REDIS:
            build = spec.get("build")
            build = build if isinstance(build, dict) else {}
            dockerfile = str(build.get("dockerfile", ""))
            if build.get("context") != "." or dockerfile != f"{name}/Dockerfile":
                problems.append(
                    f"{name}: build must be {{context: ., dockerfile: {name}/Dockerfile}}"
                )
            elif not (ROOT / dockerfile).is_file():
                problems.append(f"{name}: {dockerfile} does not exist")
        if not (spec.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck test")
        if spec.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart must be unless-stopped, got {spec.get('restart')!r}")
    for extra in sorted(set(services) - {*SERVICES, REDIS}):
        problems.append(f"{extra}: not a service of common/topology.py")
    return problems


def check_healthchecks(compose: Compose) -> list[str]:
    problems: list[str] = []
    for name, spec in (compose.get("services") or {}).items():
        test = " ".join(map(str, (spec.get("healthcheck") or {}).get("test") or []))
        if name in SERVICES:
            url = f"http://127.0.0.1:{SERVICES[name].port}/healthz"
            if url not in test or "urllib" not in test:
                problems.append(f"{name}: healthcheck must fetch {url} with urllib, got {test!r}")
        elif name == REDIS and "redis-cli ping" not in test:
            problems.append(f"{name}: healthcheck must run redis-cli ping, got {test!r}")
    return problems


def check_redis(compose: Compose) -> list[str]:
    spec = (compose.get("services") or {}).get(REDIS) or {}
    problems: list[str] = []
    image = str(spec.get("image", ""))
    if not image.startswith("redis:"):
        problems.append(f"redis: must use the official image redis:<tag>, got {image!r}")
    command = spec.get("command") or []
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    if "--appendonly" not in words or words[words.index("--appendonly") + 1 :][:1] != ["yes"]:
        problems.append(f"redis: command must enable AOF (--appendonly yes), got {command!r}")
    mounts = [str(v) for v in spec.get("volumes") or []]
    if "redis-data:/data" not in mounts:
        problems.append(f"redis: the named volume redis-data must be mounted at /data: {mounts}")
    return problems


REDIS_SECRET = "/run/secrets/redis_password"
BOOTSTRAP_SECRET = "/run/secrets/gateway_bootstrap_key"
IMAGE_URL_SECRET = "/run/secrets/gateway_image_url_secret"


def _words(value: Any) -> list[str]:
    return value.split() if isinstance(value, str) else [str(w) for w in value or []]


def check_redis_hardening(compose: Compose) -> list[str]:
    """Redis starts with a password from a secret and without its dangerous commands."""
    spec = (compose.get("services") or {}).get(REDIS) or {}
    problems: list[str] = []
    words = _words(spec.get("entrypoint")) + _words(spec.get("command"))
    script = " ".join(words)
    if "requirepass" not in script or REDIS_SECRET not in script:
        problems.append(f"redis: must read requirepass from {REDIS_SECRET}")
    if "--requirepass" in words:
        problems.append("redis: --requirepass on the command line shows the password in ps")
    if "redis_password" not in (spec.get("secrets") or []):
        problems.append("redis: the redis_password secret is not mounted")
    for command in ("CONFIG", "FLUSHALL", "DEBUG", "MODULE", "SHUTDOWN"):
        renamed = any(
            words[i : i + 3] == ["--rename-command", command, ""] for i in range(len(words))
        )
        if not renamed:
            problems.append(f"redis: {command} must be disabled (--rename-command {command} '')")
    health = " ".join(map(str, (spec.get("healthcheck") or {}).get("test") or []))
    if "REDISCLI_AUTH" not in health:
        problems.append("redis: the healthcheck must authenticate (REDISCLI_AUTH)")
    return problems


def check_secrets(compose: Compose) -> list[str]:
    """Every Redis client gets the password by a secret; the gateway its bootstrap key."""
    problems: list[str] = []
    declared = compose.get("secrets") or {}
    for name in COMPOSE_SECRETS:
        if not str((declared.get(name) or {}).get("file", "")).startswith("./secrets/"):
            problems.append(f"secret {name} must come from a file under ./secrets/")
    services = compose.get("services") or {}
    for name in SERVICES:
        spec = services.get(name) or {}
        env = environment(spec)
        mounted = spec.get("secrets") or []
        has_password = (
            env.get("REDIS_PASSWORD_FILE") == REDIS_SECRET and "redis_password" in mounted
        )
        if "redis_url" in settings_class(name).model_fields and not has_password:
            problems.append(f"{name}: talks to Redis without its password ({REDIS_SECRET})")
        if name == "gateway" and (
            env.get("GATEWAY_BOOTSTRAP_KEY_FILE") != BOOTSTRAP_SECRET
            or "gateway_bootstrap_key" not in mounted
        ):
            problems.append(f"gateway: the bootstrap admin key must come from {BOOTSTRAP_SECRET}")
        if name == "gateway" and (
            env.get("GATEWAY_IMAGE_URL_SECRET_FILE") != IMAGE_URL_SECRET
            or "gateway_image_url_secret" not in mounted
        ):
            problems.append(f"gateway: the image URL key must come from {IMAGE_URL_SECRET}")
    return problems


def published_address(entry: Any) -> str | None:
    """The host address a `ports` entry publishes on (None: every interface)."""
    if isinstance(entry, dict):
        return entry.get("host_ip") or None
    parts = str(entry).rsplit(":", 2)
    if len(parts) < 3:
        return None
    # "${VAR:-default}" publishes on the default unless the operator sets VAR.
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", parts[0])
    return match.group(1) if match else parts[0]


def check_published_on_loopback(compose: Compose) -> list[str]:
    gateway = (compose.get("services") or {}).get("gateway") or {}
    return [
        f"gateway: publishes {entry!r} beyond 127.0.0.1 by default"
        for entry in gateway.get("ports") or []
        if published_address(entry) != "127.0.0.1"
    ]


def check_depends_on(compose: Compose) -> list[str]:
    problems: list[str] = []
    services = compose.get("services") or {}
    graph: dict[str, set[str]] = {}
    for name, spec in services.items():
        deps = depends_on(spec)
        graph[name] = set(deps)
        expected = set(SERVICES[name].depends_on) if name in SERVICES else set()
        if set(deps) != expected:
            problems.append(
                f"{name}: depends_on {sorted(deps)} != topology {sorted(expected)}"
                f" (missing {sorted(expected - set(deps))}, extra {sorted(set(deps) - expected)})"
            )
        for dep, options in deps.items():
            if (options or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: depends_on {dep} needs condition: service_healthy")
    if cycle := find_cycle(graph):
        problems.append(f"depends_on has a cycle through {cycle}")
    return problems


def check_ports(compose: Compose) -> list[str]:
    problems: list[str] = []
    for name, spec in (compose.get("services") or {}).items():
        published = container_ports(spec)
        if name == "gateway":
            if published != [SERVICES[name].port]:
                problems.append(f"gateway: must publish exactly port 8000, got {published}")
        elif published:
            problems.append(f"{name}: publishes {published}; only the gateway may publish a port")
        elif name in SERVICES and str(SERVICES[name].port) not in map(str, spec.get("expose", [])):
            problems.append(f"{name}: must expose {SERVICES[name].port}")
    return problems


def url_target(field: str) -> tuple[str, int]:
    """(compose service, port) that a `<short>_url` settings field must point at."""
    if field == "redis_url":
        return REDIS, REDIS_PORT
    stem = field.removesuffix("_url")
    for spec in SERVICES.values():
        if spec.short == stem:
            return spec.name, spec.port
    raise LookupError(f"settings field {field} names no service of common/topology.py")


def check_upstream_urls(compose: Compose, service: str) -> list[str]:
    """Every `*_url` field of the service's settings is set to the right compose service."""
    cls = settings_class(service)
    env = environment((compose.get("services") or {}).get(service) or {})
    problems: list[str] = []
    for field in (f for f in cls.model_fields if f.endswith("_url")):
        names = env_names(cls, field)
        value = next((env[n] for n in names if n in env), None)
        if value is None:
            problems.append(f"{service}: {field} is not set; set one of {names}")
            continue
        host, port = url_target(field)
        parsed = urlsplit(value)
        if parsed.hostname != host or parsed.port != port:
            problems.append(f"{service}: {field}={value!r} must point at {host}:{port}")
    return problems


def check_model_registry(compose: Compose, service: str) -> list[str]:
    """A service that asks the core model takes the engines and the default model from
    compose's environment (`MODEL_ENGINES=... docker compose up`), parsable when unset."""
    if "model_engines" not in settings_class(service).model_fields:
        return []
    env = environment((compose.get("services") or {}).get(service) or {})
    wanted = {"MODEL_ENGINES": "${MODEL_ENGINES:-[]}", "DEFAULT_MODEL": "${DEFAULT_MODEL:-}"}
    return [
        f"{service}: {name} must be {value} (is {env.get(name)!r})"
        for name, value in wanted.items()
        if env.get(name) != value
    ]


def check_volumes(compose: Compose) -> list[str]:
    problems: list[str] = []
    declared = set(compose.get("volumes") or {})
    problems += [
        f"top-level volume {v} missing" for v in sorted({"models", "redis-data"} - declared)
    ]
    services = compose.get("services") or {}
    for name in MODEL_SERVICES:
        mounts = [str(v) for v in (services.get(name) or {}).get("volumes") or []]
        if "models:/data" not in mounts:
            problems.append(f"{name}: the models volume must be mounted at /data (its data_dir)")
    return problems


def validate_compose(compose: Compose) -> list[str]:
    problems = [
        *check_services(compose),
        *check_healthchecks(compose),
        *check_redis(compose),
        *check_redis_hardening(compose),
        *check_secrets(compose),
        *check_published_on_loopback(compose),
        *check_depends_on(compose),
        *check_ports(compose),
        *check_volumes(compose),
    ]
    for name in SERVICES:
        problems += check_upstream_urls(compose, name)
        problems += check_model_registry(compose, name)
    return problems


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


def test_compose_lists_every_service_with_build_healthcheck_and_restart(compose: Compose) -> None:
    assert check_services(compose) == []
    assert check_healthchecks(compose) == []


def test_redis_is_the_official_image_with_aof_on_a_volume(compose: Compose) -> None:
    assert check_redis(compose) == []


def test_redis_has_a_password_from_a_secret_and_no_dangerous_commands(
    compose: Compose,
) -> None:
    assert check_redis_hardening(compose) == []


def test_every_redis_client_gets_the_password_and_the_gateway_its_admin_key(
    compose: Compose,
) -> None:
    assert check_secrets(compose) == []


def test_the_gateway_is_published_on_loopback_only(compose: Compose) -> None:
    assert check_published_on_loopback(compose) == []
    assert published_address("0.0.0.0:8000:8000") == "0.0.0.0"
    assert published_address("8000:8000") is None


def test_depends_on_is_the_topology_graph_healthy_and_acyclic(compose: Compose) -> None:
    assert check_depends_on(compose) == []


def test_only_the_gateway_publishes_a_port(compose: Compose) -> None:
    assert check_ports(compose) == []


def test_model_data_and_redis_live_on_named_volumes(compose: Compose) -> None:
    assert check_volumes(compose) == []


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_upstream_url_points_at_its_compose_service(compose: Compose, service: str) -> None:
    assert check_upstream_urls(compose, service) == []


def test_the_gateway_is_told_where_the_services_it_only_probes_are(compose: Compose) -> None:
    env = environment(compose["services"]["gateway"])
    assert env["GATEWAY_TOOLS_URL"] == "http://tools_svc:8004"
    assert env["GATEWAY_REASONING_URL"] == "http://reasoning_svc:8007"


def test_find_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c"]


def _set(path: str, value: Any) -> Callable[[Compose], None]:
    """A mutation that sets compose[k1][k2]... (keys separated by '/') to `value`."""

    def mutate(data: Compose) -> None:
        *parents, last = path.split("/")
        node = data
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return mutate


BROKEN: list[tuple[str, Callable[[Compose], None], str]] = [
    ("service removed", _set("services/tools_svc", None), "tools_svc: missing"),
    ("unknown service", _set("services/extra", {"image": "x"}), "extra: not a service"),
    ("no healthcheck", _set("services/rag_svc/healthcheck", None), "rag_svc: no healthcheck"),
    (
        "healthcheck on the wrong port",
        _set("services/rag_svc/healthcheck/test", ["CMD", "python", "-c", "urllib :8000/healthz"]),
        "rag_svc: healthcheck must fetch",
    ),
    ("no restart policy", _set("services/moe_svc/restart", None), "moe_svc: restart"),
    (
        "wrong dockerfile",
        _set("services/moe_svc/build/dockerfile", "x/Dockerfile"),
        "moe_svc: build",
    ),
    ("redis image", _set("services/redis/image", "bitnami/redis:7"), "official image"),
    ("redis without AOF", _set("services/redis/command", "redis-server"), "AOF"),
    ("redis without volume", _set("services/redis/volumes", None), "redis-data"),
    ("edge dropped", _set("services/gateway/depends_on/redis", None), "missing ['redis']"),
    (
        "cycle",
        _set("services/moe_svc/depends_on", {"gateway": {"condition": "service_healthy"}}),
        "cycle",
    ),
    (
        "started, not healthy",
        _set("services/tools_svc/depends_on/rag_svc/condition", "service_started"),
        "tools_svc: depends_on rag_svc needs condition: service_healthy",
    ),
    ("list-form depends_on", _set("services/rag_svc/depends_on", ["moe_svc"]), "service_healthy"),
    ("rag published", _set("services/rag_svc/ports", ["8003:8003"]), "only the gateway"),
    ("gateway unpublished", _set("services/gateway/ports", None), "exactly port 8000"),
    (
        "wrong upstream host",
        _set("services/router_svc/environment/ROUTER_RAG_URL", "http://rag:8003"),
        "router_svc: rag_url",
    ),
    (
        "wrong upstream port",
        _set("services/reasoning_svc/environment/REASONING_TOOLS_URL", "http://tools_svc:8000"),
        "reasoning_svc: tools_url",
    ),
    ("url not set", _set("services/rag_svc/environment", None), "rag_svc: moe_url is not set"),
    (
        "engines not passed on",
        _set("services/reasoning_svc/environment/MODEL_ENGINES", None),
        "reasoning_svc: MODEL_ENGINES",
    ),
    ("redis url", _set("services/memory_svc/environment/REDIS_URL", None), "REDIS_URL"),
    ("models volume", _set("services/creative_svc/volumes", None), "creative_svc: the models"),
    ("redis without password", _set("services/redis/command", ["redis-server"]), "requirepass"),
    ("redis secret unmounted", _set("services/redis/secrets", None), "redis_password secret"),
    (
        "memory without password",
        _set("services/memory_svc/environment/REDIS_PASSWORD_FILE", None),
        "memory_svc: talks to Redis without its password",
    ),
    (
        "gateway secret unmounted",
        _set("services/gateway/secrets", ["redis_password"]),
        "bootstrap admin key",
    ),
    (
        "image key from the volume",
        _set("services/gateway/environment/GATEWAY_IMAGE_URL_SECRET_FILE", None),
        "image URL key",
    ),
    ("secret not a file", _set("secrets/redis_password", {"environment": "X"}), "secret redis"),
    ("gateway on every interface", _set("services/gateway/ports", ["8000:8000"]), "127.0.0.1"),
    (
        "gateway on 0.0.0.0",
        _set("services/gateway/ports", ["${GATEWAY_PUBLISH_ADDRESS:-0.0.0.0}:8000:8000"]),
        "beyond 127.0.0.1",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_validator_rejects_a_broken_compose_file(
    compose: Compose, mutate: Callable[[Compose], None], expected: str
) -> None:
    assert validate_compose(compose) == []
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = validate_compose(broken)
    assert any(expected in p for p in problems), problems
