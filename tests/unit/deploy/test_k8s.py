"""deploy/k8s: the base is what the generator makes, every overlay builds with
`kubectl kustomize`, validates against the Kubernetes schemas, and its
NetworkPolicies, Services and upstream URLs agree with common/topology.py.

Each check is a function of the built manifests that returns a list of
problems, so the negative tests at the end can break a copy and show the
check notices. The expected callers are computed here from the topology, not
taken from the generator.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from common.topology import REDIS, REDIS_PORT, SERVICES
from launcher.secrets import COMPOSE_SECRETS
from scripts.k8s_manifests import SECRET_NAME, stale_files
from scripts.settings_tables import settings_class

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
OVERLAY_NAMES = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
# The oldest release with every field the manifests use (appArmorProfile: 1.30), and the newest
# the schema package carries.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
NAME_LABEL = "app.kubernetes.io/name"
# An overlay's external engine (vLLM) carries this component label.
ENGINE_COMPONENT = "model-engine"

Manifest = dict[str, Any]


def dns(service: str) -> str:
    return service.replace("_", "-")


def build(overlay: str) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it builds the overlays: `kubectl kustomize`)")
    done = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAY_NAMES)
def built(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, build(request.param)


def of_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[Manifest]) -> dict[str, Manifest]:
    return {**of_kind(docs, "Deployment"), **of_kind(docs, "StatefulSet")}


def pod_labels(workload: Manifest) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items()) and not selector.get(
        "matchExpressions"
    )


def engines(docs: list[Manifest]) -> set[str]:
    """The external engines' workloads an overlay adds (vLLM)."""
    return {
        name
        for name, w in workloads(docs).items()
        if pod_labels(w).get("app.kubernetes.io/component") == ENGINE_COMPONENT
    }


def asks_core_model(service: str) -> bool:
    return "model_engines" in settings_class(service).model_fields


def expected_callers(target: str) -> set[str]:
    """Who may open connections to `target`: its callers in the topology, and the gateway
    (whose /readyz asks every service for its readiness)."""
    callers = {name for name, spec in SERVICES.items() if target in spec.depends_on}
    return callers | ({"gateway"} if target in SERVICES and target != "gateway" else set())


def policy_peers(docs: list[Manifest], target: str, direction: str) -> set[str] | None:
    """The platform's pods allowed to reach `target` (ingress) or that `target` may
    reach (egress) through the namespace's NetworkPolicies; None when some rule allows
    every source (or every destination) inside the namespace."""
    pods = {name: pod_labels(w) for name, w in workloads(docs).items()}
    target_labels = pods[dns(target)]
    allowed: set[str] = set()
    for policy in of_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if not selects(spec["podSelector"], target_labels):
            continue
        if direction.capitalize() not in spec.get("policyTypes", []):
            continue
        for rule in spec.get(direction, []) or []:
            peers = rule.get("from" if direction == "ingress" else "to")
            if peers is None:
                return None
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    continue  # another namespace (DNS, the ingress controller)
                for pod, labels in pods.items():
                    if selects(peer["podSelector"], labels):
                        allowed.add(pod)
    return allowed


# ---------------------------------------------------------------------------------------------
# Checks: each returns the problems it finds.


def check_default_deny(docs: list[Manifest]) -> list[str]:
    for policy in of_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if (
            spec["podSelector"] == {}
            and set(spec.get("policyTypes", [])) == {"Ingress", "Egress"}
            and not spec.get("ingress")
            and not spec.get("egress")
        ):
            return []
    return ["no default-deny NetworkPolicy (ingress and egress) for every pod"]


def check_network_policies(docs: list[Manifest]) -> list[str]:
    """Each service (and Redis) takes connections only from its callers and opens them
    only to what it calls; the gateway alone takes them from outside the platform."""
    problems: list[str] = []
    engine_pods = engines(docs)
    for target in [*SERVICES, REDIS, *engine_pods]:
        ingress = policy_peers(docs, target, "ingress")
        if target == "gateway":
            if ingress is not None and ingress:
                problems.append(f"gateway: ingress limited to platform pods {sorted(ingress)}")
            continue
        if ingress is None:
            problems.append(f"{target}: a policy lets every pod in")
            continue
        if target in engine_pods:  # the services that ask the core model, no other
            want = {dns(s) for s in SERVICES if asks_core_model(s)}
        else:
            want = {dns(c) for c in expected_callers(target)}
        if ingress != want:
            problems.append(
                f"{target}: ingress from {sorted(ingress)}, topology says {sorted(want)}"
            )
    for name, spec in SERVICES.items():
        egress = policy_peers(docs, name, "egress")
        want = {dns(d) for d in spec.depends_on}
        if name == "gateway":
            want |= {dns(s) for s in SERVICES if s != "gateway"}
        if asks_core_model(name):
            want |= engine_pods
        if egress is None or egress != want:
            problems.append(f"{name}: egress to {egress}, topology says {sorted(want)}")
    return problems


def check_services(docs: list[Manifest]) -> list[str]:
    """A Service per service on its topology port, selecting that service's pods."""
    problems: list[str] = []
    services = of_kind(docs, "Service")
    pods = workloads(docs)
    for name, spec in [*SERVICES.items(), (REDIS, None)]:
        port = REDIS_PORT if spec is None else spec.port
        svc = services.get(dns(name))
        if svc is None:
            problems.append(f"{name}: no Service {dns(name)}")
            continue
        ports = [(p["port"], p.get("targetPort")) for p in svc["spec"]["ports"]]
        if ports != [(port, port)]:
            problems.append(f"{name}: Service ports {ports}, topology says {port}")
        workload = pods.get(dns(name))
        if workload is None or not selects(
            {"matchLabels": svc["spec"]["selector"]}, pod_labels(workload)
        ):
            problems.append(f"{name}: the Service selects no pod of {dns(name)}")
    return problems


def check_upstream_urls(docs: list[Manifest]) -> list[str]:
    """Every `*_URL` a container gets names a Service of the build on its topology port."""
    problems: list[str] = []
    by_short = {spec.short.upper(): spec for spec in SERVICES.values()}
    for name, workload in workloads(docs).items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for var in container.get("env", []):
                key, value = var["name"], str(var.get("value", ""))
                if key == "MODEL_ENGINES":
                    problems += _engine_urls(name, value, of_kind(docs, "Service"))
                    continue
                if key == "REDIS_URL":
                    if value != f"redis://{REDIS}:{REDIS_PORT}/0":
                        problems.append(f"{name}: REDIS_URL={value}")
                    continue
                parts = key.split("_")
                if len(parts) != 3 or parts[2] != "URL" or parts[1] not in by_short:
                    continue
                target = by_short[parts[1]]
                if value != f"http://{dns(target.name)}:{target.port}":
                    problems.append(f"{name}: {key}={value}, topology says {target.name}")
    return problems


def _engine_urls(name: str, value: str, services: dict[str, Manifest]) -> list[str]:
    """Each engine of a MODEL_ENGINES setting is a Service of the build, on its port."""
    problems = []
    for engine in json.loads(value):
        parsed = urlsplit(engine["base_url"])
        service = services.get(parsed.hostname or "")
        ports = [p["port"] for p in service["spec"]["ports"]] if service else []
        if parsed.port not in ports:
            problems.append(f"{name}: engine {engine['name']} at {engine['base_url']}: no Service")
    return problems


def check_pods(docs: list[Manifest]) -> list[str]:
    """Probes, resources, a non-root user and the Secret's keys on every container."""
    problems: list[str] = []
    for name, workload in workloads(docs).items():
        pod = workload["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: may run as root")
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(part, {})):
                    problems.append(f"{name}: {part} must set cpu and memory")
            if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if name == REDIS or name in engines(docs):
                if not container.get("readinessProbe") or not container.get("livenessProbe"):
                    problems.append(f"{name}: needs a readiness and a liveness probe")
                continue
            paths = {
                probe: container.get(probe, {}).get("httpGet", {}).get("path")
                for probe in ("livenessProbe", "readinessProbe")
            }
            if paths["livenessProbe"] != "/healthz":
                problems.append(f"{name}: liveness must be /healthz, is {paths['livenessProbe']}")
            if not str(paths["readinessProbe"]).startswith("/readyz"):
                problems.append(f"{name}: readiness must be /readyz, is {paths['readinessProbe']}")
        for volume in pod.get("volumes", []):
            secret = volume.get("secret")
            if secret is None:
                continue
            keys = {item["key"] for item in secret.get("items", [])}
            if secret["secretName"] != SECRET_NAME or not keys <= set(COMPOSE_SECRETS):
                problems.append(f"{name}: secret {secret['secretName']} keys {sorted(keys)}")
    return problems


def check_autoscalers(docs: list[Manifest]) -> list[str]:
    """Autoscalers only target Deployments (a StatefulSet here owns its volume)."""
    problems: list[str] = []
    deployments = of_kind(docs, "Deployment")
    for name, hpa in of_kind(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deployments:
            problems.append(f"hpa {name}: targets {ref['kind']}/{ref['name']}")
    return problems


CHECKS: list[Callable[[list[Manifest]], list[str]]] = [
    check_default_deny,
    check_network_policies,
    check_services,
    check_upstream_urls,
    check_pods,
    check_autoscalers,
]


# ---------------------------------------------------------------------------------------------


def test_the_base_is_what_the_generator_makes() -> None:
    assert stale_files() == [], "run: python -m scripts.k8s_manifests --write"


def test_there_are_local_production_and_vllm_overlays() -> None:
    assert {"local", "production", "vllm"} <= set(OVERLAY_NAMES)


def test_the_vllm_overlay_makes_vllm_the_core_model() -> None:
    docs = build("vllm")
    assert engines(docs) == {"vllm"}
    for name, workload in workloads(docs).items():
        env = {
            v["name"]: v.get("value")
            for v in workload["spec"]["template"]["spec"]["containers"][0].get("env", [])
        }
        service = name.replace("-", "_")
        if service in SERVICES and asks_core_model(service):
            [engine] = json.loads(env["MODEL_ENGINES"])
            assert env["DEFAULT_MODEL"] in engine["models"], name
        else:
            assert "MODEL_ENGINES" not in env, name
    container = workloads(docs)["vllm"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_overlay_validates_against_the_kubernetes_schemas(
    built: tuple[str, list[Manifest]], version: str
) -> None:
    overlay, docs = built
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert errors == [], f"{overlay} against Kubernetes {version}"


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_every_overlay_agrees_with_the_topology(
    built: tuple[str, list[Manifest]], check: Callable[[list[Manifest]], list[str]]
) -> None:
    overlay, docs = built
    assert check(docs) == [], overlay


def test_every_resource_lands_in_the_platform_namespace(built: tuple[str, list[Manifest]]) -> None:
    overlay, docs = built
    outside = [
        f"{d['kind']}/{d['metadata']['name']}"
        for d in docs
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "llm-platform"
    ]
    assert outside == [], overlay


def test_production_scales_and_local_does_not() -> None:
    local, production = build("local"), build("production")
    assert of_kind(local, "HorizontalPodAutoscaler") == {}
    autoscalers = of_kind(production, "HorizontalPodAutoscaler")
    assert {"gateway", "router-svc", "moe-svc"} <= set(autoscalers)
    assert all(h["spec"]["minReplicas"] >= 2 for h in autoscalers.values())
    claims = of_kind(production, "PersistentVolumeClaim").values()
    assert all(c["spec"]["accessModes"] == ["ReadWriteMany"] for c in claims)
    assert set(of_kind(production, "Ingress")) == {"gateway"}


# ---------------------------------------------------------------------------------------------
# The checks notice a broken manifest.


def _policy(name: str) -> Callable[[list[Manifest]], Manifest]:
    return lambda docs: of_kind(docs, "NetworkPolicy")[name]


def _open_moe(docs: list[Manifest]) -> None:
    _policy("moe-svc")(docs)["spec"]["ingress"][0].pop("from")


def _extra_caller(docs: list[Manifest]) -> None:
    peers = _policy("redis")(docs)["spec"]["ingress"][0]["from"]
    peers.append({"podSelector": {"matchLabels": {NAME_LABEL: "tools-svc"}}})


def _moe_calls_out(docs: list[Manifest]) -> None:
    spec = _policy("moe-svc")(docs)["spec"]
    spec["egress"] = [{"to": [{"podSelector": {"matchLabels": {NAME_LABEL: "rag-svc"}}}]}]


def _no_default_deny(docs: list[Manifest]) -> None:
    docs[:] = [d for d in docs if d["metadata"]["name"] != "default-deny"]


def _wrong_url(docs: list[Manifest]) -> None:
    env = workloads(docs)["router-svc"]["spec"]["template"]["spec"]["containers"][0]["env"]
    next(v for v in env if v["name"] == "ROUTER_MOE_URL")["value"] = "http://moe-svc:8000"


def _wrong_port(docs: list[Manifest]) -> None:
    of_kind(docs, "Service")["rag-svc"]["spec"]["ports"][0]["port"] = 80


def _no_probe(docs: list[Manifest]) -> None:
    workloads(docs)["memory-svc"]["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")


def _root(docs: list[Manifest]) -> None:
    workloads(docs)["gateway"]["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")


def _tools_reach_vllm(docs: list[Manifest]) -> None:
    peers = _policy("vllm")(docs)["spec"]["ingress"][0]["from"]
    peers.append({"podSelector": {"matchLabels": {NAME_LABEL: "tools-svc"}}})


def _engine_elsewhere(docs: list[Manifest]) -> None:
    env = workloads(docs)["rag-svc"]["spec"]["template"]["spec"]["containers"][0]["env"]
    entry = next(v for v in env if v["name"] == "MODEL_ENGINES")
    entry["value"] = entry["value"].replace("vllm:8000", "vllm:9000")


ENGINE_BROKEN: list[tuple[str, Callable[[list[Manifest]], None], str]] = [
    ("tools reaches vllm", _tools_reach_vllm, "vllm: ingress from"),
    ("engine on the wrong port", _engine_elsewhere, "rag-svc: engine vllm"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [b[1:] for b in ENGINE_BROKEN], ids=[b[0] for b in ENGINE_BROKEN]
)
def test_the_checks_notice_a_broken_engine_overlay(
    mutate: Callable[[list[Manifest]], None], expected: str
) -> None:
    docs = copy.deepcopy(build("vllm"))
    assert [p for check in CHECKS for p in check(docs)] == []
    mutate(docs)
    problems = [p for check in CHECKS for p in check(docs)]
    assert any(expected in p for p in problems), problems


BROKEN: list[tuple[str, Callable[[list[Manifest]], None], str]] = [
    ("moe open to every pod", _open_moe, "moe_svc: a policy lets every pod in"),
    ("tools reaches redis", _extra_caller, "redis: ingress from"),
    ("moe calls rag", _moe_calls_out, "moe_svc: egress to"),
    ("no default deny", _no_default_deny, "no default-deny"),
    ("url to the wrong port", _wrong_url, "ROUTER_MOE_URL=http://moe-svc:8000"),
    ("service port", _wrong_port, "rag_svc: Service ports"),
    ("no readiness probe", _no_probe, "memory-svc: readiness"),
    ("root", _root, "gateway: may run as root"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_the_checks_notice_a_broken_manifest(
    mutate: Callable[[list[Manifest]], None], expected: str
) -> None:
    docs = copy.deepcopy(build("local"))
    assert [p for check in CHECKS for p in check(docs)] == []
    mutate(docs)
    problems = [p for check in CHECKS for p in check(docs)]
    assert any(expected in p for p in problems), problems


def test_a_stale_base_is_noticed(tmp_path: Path) -> None:
    from scripts.k8s_manifests import write

    write(tmp_path)
    assert stale_files(tmp_path) == []
    (tmp_path / "moe-svc.yaml").write_text("# edited by hand\n")
    (tmp_path / "extra.yaml").write_text("kind: ConfigMap\n")
    assert stale_files(tmp_path) == ["extra.yaml", "moe-svc.yaml"]
