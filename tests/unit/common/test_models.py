"""The model registry: which server answers a model id, and what an engine is sent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from common.caller import Caller, caller_var
from common.http_client import ServiceClient
from common.models import ModelEngine, ModelRegistry
from reasoning_svc.settings import ReasoningSettings
from router_svc.settings import RouterSettings

ENGINE = {"name": "llamacpp", "base_url": "http://127.0.0.1:8080/v1", "models": ["smol-q4"]}


def platform() -> ServiceClient:
    return ServiceClient("moe_svc", "http://127.0.0.1:8002")


def test_an_engine_from_the_shared_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_ENGINES", json.dumps([ENGINE]))
    monkeypatch.setenv("DEFAULT_MODEL", "smol-q4")
    # A service's own prefix wins over the shared name.
    monkeypatch.setenv("ROUTER_DEFAULT_MODEL", "smollm2-135m-moe-8x")
    reasoning, router = ReasoningSettings(), RouterSettings()
    assert [e.name for e in reasoning.model_engines] == ["llamacpp"]
    assert reasoning.model_engines[0].base_url == "http://127.0.0.1:8080"  # /v1 is the API's
    assert reasoning.default_model == "smol-q4"
    assert router.default_model == "smollm2-135m-moe-8x"


@pytest.mark.parametrize(
    ("engines", "message"),
    [
        ([{**ENGINE, "base_url": "file:///etc/passwd"}], "must be an http(s) URL"),
        ([{**ENGINE, "name": "Llama CPP"}], "must be 1-40 of a-z"),
        ([{**ENGINE, "models": []}], "at least 1 item"),
        ([ENGINE, {**ENGINE, "name": "other"}], "listed by engines llamacpp and other"),
        ([ENGINE, ENGINE], "names repeat"),
        ([{**ENGINE, "api_key_file": "/nonexistent/key"}], "cannot be read"),
        ([{**ENGINE, "tokenizer": "x"}], "Extra inputs are not permitted"),
    ],
)
def test_a_wrong_engine_list_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, engines: list[dict[str, object]], message: str
) -> None:
    monkeypatch.setenv("MODEL_ENGINES", json.dumps(engines))
    with pytest.raises(ValidationError, match=re.escape(message)):
        ReasoningSettings()


def test_routes_by_model_id() -> None:
    registry = ModelRegistry(platform(), (ModelEngine.model_validate(ENGINE),))
    external = registry.route("smol-q4")
    assert (external.upstream, external.model, external.platform) == (
        "engine:llamacpp",
        "smol-q4",
        False,
    )
    # Every id no engine claims is moe_svc's, the empty one included (its first model).
    assert registry.route("smollm2-135m-moe-8x").platform
    assert registry.route("").upstream == "moe_svc"
    assert registry.external_models() == {"smol-q4": "llamacpp"}


def test_the_default_model_decides_where_unnamed_calls_go() -> None:
    registry = ModelRegistry(platform(), (ModelEngine.model_validate(ENGINE),), "smol-q4")
    route = registry.route()
    assert (route.upstream, route.model) == ("engine:llamacpp", "smol-q4")
    assert registry.chat().name == "smol-q4"
    assert not registry.chat().extensions
    checks = registry.readiness_checks()
    assert [(c.name, c.required) for c in checks] == [("engine:llamacpp", True)]
    # With moe_svc as the default, an engine being down only shows.
    other = ModelRegistry(platform(), (ModelEngine.model_validate(ENGINE),))
    assert [c.required for c in other.readiness_checks()] == [False]


def test_an_engine_is_not_sent_the_platforms_extensions() -> None:
    registry = ModelRegistry(platform(), (ModelEngine.model_validate(ENGINE),))
    body = {"model": "smol-q4", "messages": [], "return_experts": True}
    assert registry.route("smol-q4").request_body(body) == {"model": "smol-q4", "messages": []}
    assert registry.route("smollm2-135m-moe-8x").request_body(body) == body


async def test_an_engine_gets_its_key_and_never_the_callers_identity(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-engine-secret\n")
    engine = ModelEngine.model_validate({**ENGINE, "api_key_file": str(key_file)})
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    key = engine.key()
    assert key == "sk-engine-secret"
    client = ServiceClient(
        "engine:llamacpp",
        engine.base_url,
        transport=httpx.MockTransport(handler),
        headers={"Authorization": f"Bearer {key}"},
        forward_caller=False,
    )
    internal = ServiceClient(
        "rag_svc", "http://127.0.0.1:8003", transport=httpx.MockTransport(handler)
    )
    caller = Caller(tenant="acme", key_id="ab12", role="member", scopes=frozenset({"chat"}))
    token = caller_var.set(caller)
    try:
        await client.get_json("/v1/models")
        await internal.get_json("/v1/models")
    finally:
        caller_var.reset(token)
    to_engine, to_service = seen
    assert to_engine.headers["authorization"] == "Bearer sk-engine-secret"
    identity = {name.lower() for name in caller.headers()}
    assert identity and identity.isdisjoint(to_engine.headers.keys())
    assert identity <= set(to_service.headers.keys())
    assert "authorization" not in to_service.headers
