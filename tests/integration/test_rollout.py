"""Safe rollout through the real gateway: a candidate model version on a share of the
traffic, feedback counted per version, promotion behind the eval gate, rollback.

A real moe_svc serves a tiny base model and has three tuned versions on disk (tiny
models of other seeds, so each answers differently): `cand` passed its eval gate,
`bad` failed it, `ungated` never ran it. The gateway (keys required) reaches the
real moe_svc and a real memory_svc; router_svc is the fake, which notes the
`X-Model-Version` each dispatch arrives with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.helpers.servers import REPO_ROOT, RunningServer, start_redis, start_service
from tests.helpers.tiny_llm import make_tiny_llm
from tests.integration.gateway_support import admin, gateway_stack, keyed_client
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration

MODEL = "tiny-moe"
QUESTION = "What is the capital of France?"
PROMPT = [{"role": "user", "content": QUESTION}]


def _version(root: Path, name: str, seed: int, gate: dict[str, Any] | None) -> None:
    directory = make_tiny_llm(root / name, seed=seed)
    metadata: dict[str, Any] = {"id": name, "parent": "base", "method": "kto", "created": 1}
    if gate is not None:
        metadata["gate"] = gate
    (directory / "version.json").write_text(json.dumps(metadata))


@dataclass
class Platform:
    gateway: RunningServer
    moe: RunningServer
    memory: RunningServer
    fake: RunningServer
    keys: dict[str, str]

    def http(self, who: str) -> httpx.Client:
        return keyed_client(self.gateway, self.keys[who], 120)

    def moe_answer(self, version: str | None = None) -> httpx.Response:
        """moe_svc asked directly, as the platform's services ask it."""
        headers = {"X-Model-Version": version} if version else {}
        return httpx.post(
            f"{self.moe.url}/v1/chat/completions",
            json={"model": MODEL, "messages": PROMPT, "max_tokens": 12, "temperature": 0},
            headers=headers,
            timeout=60,
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root: Path = tmp_path_factory.mktemp("rollout")
    base = make_tiny_llm(root / "base", seed=0)
    versions = root / "moe-data" / "models" / "versions"
    _version(versions, "cand", 1, {"passed": True, "failed": []})
    _version(versions, "bad", 2, {"passed": False, "failed": ["science perplexity 30 -> 40"]})
    _version(versions, "ungated", 3, None)
    moe_env = {
        "MOE_MODEL_DIR": str(base),
        "MOE_SERVED_MODEL_NAME": MODEL,
        "MOE_DATA_DIR": str(root / "moe-data"),
        "MOE_NUM_THREADS": "1",
        "MOE_MAX_BATCH_SIZE": "4",
    }
    memory_redis = start_redis(root / "memory-redis")
    started: dict[str, RunningServer] = {}

    def real_moe(_: RunningServer) -> RunningServer:
        started["moe"] = start_service("moe_svc", root / "moe-logs", env=moe_env)
        return started["moe"]

    def real_memory(_: RunningServer) -> RunningServer:
        started["memory"] = start_memory(root / "memory", memory_redis.url)
        return started["memory"]

    env = {"GATEWAY_AUTH_REQUIRED": "true"}
    real = {"moe_svc": real_moe, "memory_svc": real_memory}
    try:
        with gateway_stack(root, env, real=real) as (gateway, fake, redis_):

            def key(tenant: str, *extra: str) -> str:
                made = admin(redis_, "create", "--tenant", tenant, "--json", *extra)
                return str(json.loads(made)["key"])

            yield Platform(
                gateway,
                started["moe"],
                started["memory"],
                fake,
                {
                    "operator": key("default", "--role", "admin"),
                    "alice": key("alpha"),
                    "alpha-admin": key("alpha", "--role", "admin"),
                    "bob": key("beta"),
                },
            )
    finally:
        memory_redis.stop()


def _status(platform: Platform) -> dict[str, Any]:
    with platform.http("operator") as client:
        reply = client.get("/admin/rollout")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _chat(platform: Platform, who: str) -> tuple[str, str | None]:
    with platform.http(who) as client:
        reply = client.post(
            "/chat/completions",
            json={"model": MODEL, "messages": PROMPT, "max_tokens": 12, "temperature": 0},
        )
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"], reply.headers.get("x-model-version")


def _rated_auto_answer(platform: Platform, who: str, tenant: str, rating: int) -> str:
    """An `auto` answer (the fake router's), stored as router_svc stores it, then rated."""
    session = f"s-{who}"
    with platform.http(who) as client:
        reply = client.post(
            "/chat/completions",
            json={"model": "auto", "messages": PROMPT, "session_id": session},
        )
        assert reply.status_code == 200, reply.text
        message_id = reply.json()["message_id"]
        run = message_id.removesuffix("-assistant")
        turns = [
            {"id": f"{run}-user", "role": "user", "content": PROMPT[0]["content"]},
            {"id": message_id, "role": "assistant", "content": "Paris."},
        ]
        headers = {"X-Tenant-ID": tenant, "X-Key-Role": "member", "X-Key-Scopes": "chat"}
        stored = httpx.post(
            f"{platform.memory.url}/v1/sessions/{session}/messages",
            json={"messages": turns},
            headers=headers,
            timeout=30,
        )
        stored.raise_for_status()
        rated = client.post(
            "/feedback", json={"session_id": session, "message_id": message_id, "rating": rating}
        )
        assert rated.status_code in (200, 201), rated.text
    return str(reply.headers.get("x-model-version"))


def _rollout(platform: Platform, who: str, body: dict[str, Any]) -> httpx.Response:
    with platform.http(who) as client:
        return client.put("/admin/rollout", json=body)


def _post(platform: Platform, path: str) -> httpx.Response:
    with platform.http("operator") as client:
        return client.post(f"/admin/rollout/{path}")


def test_only_the_operator_changes_what_serves(platform: Platform) -> None:
    for who in ("alice", "alpha-admin"):
        reply = _rollout(platform, who, {"candidate": "cand", "tenants": ["alpha"]})
        assert reply.status_code == 403, reply.text
        assert reply.json()["error"]["code"] == "operator_required"
        with platform.http(who) as client:
            assert client.get("/admin/rollout").status_code == 403
    # Nor can a tenant's admin reach moe_svc's own controls through a caller header.
    direct = httpx.post(
        f"{platform.moe.url}/v1/versions/cand/load",
        headers={"X-Tenant-ID": "alpha", "X-Key-Role": "admin", "X-Key-Scopes": "chat"},
        timeout=30,
    )
    assert direct.status_code == 403
    status = _status(platform)
    assert status["active"] is None
    listed = {v["id"]: v for v in status["models"]["versions"]}
    assert set(listed) == {"bad", "cand", "ungated"}
    assert not any(v["loaded"] for v in listed.values())
    assert listed["bad"]["gate"]["passed"] is False


def test_bad_requests_change_nothing(platform: Platform) -> None:
    for body in (
        {"candidate": "../etc", "share": 0.5},
        {"candidate": "cand", "share": 1.5},
        {"candidate": "nope", "share": 0.1},
    ):
        reply = _rollout(platform, "operator", body)
        assert reply.status_code in (400, 404, 422), reply.text
        assert "error" in reply.json()
    bad_header = httpx.post(
        f"{platform.moe.url}/v1/chat/completions",
        json={"model": MODEL, "messages": PROMPT, "max_tokens": 4},
        headers={"X-Model-Version": "../base"},
        timeout=30,
    )
    assert bad_header.status_code == 400
    assert _status(platform)["active"] is None
    assert _post(platform, "promote").status_code == 404


def test_rollout_counts_feedback_then_promote_and_roll_back(platform: Platform) -> None:
    base_answer = platform.moe_answer().json()["choices"][0]["message"]["content"]
    assert platform.moe_answer("cand").status_code == 404  # not loaded: never served silently

    reply = _rollout(platform, "operator", {"candidate": "cand", "tenants": ["alpha"]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["active"]["rollout"]["candidate"] == "cand"
    cand_answer = platform.moe_answer("cand").json()["choices"][0]["message"]["content"]
    assert cand_answer != base_answer  # the tiny models differ: the answers tell them apart

    # Tenant alpha is served by the candidate, every other tenant by the current model,
    # direct model ids and `auto` alike; the version travels to the services.
    assert _chat(platform, "alice") == (cand_answer, "cand")
    assert _chat(platform, "bob") == (base_answer, "base")
    client = openai.OpenAI(
        base_url=f"{platform.gateway.url}/v1", api_key=platform.keys["alice"], max_retries=0
    )
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == cand_answer

    assert _rated_auto_answer(platform, "alice", "alpha", 1) == "cand"
    assert _rated_auto_answer(platform, "bob", "beta", -1) == "base"
    seen = httpx.get(f"{platform.fake.url}/seen").json()
    dispatched = [s for s in seen if s["raw_path"] == "/v1/dispatch"]
    assert [s["model_version"] for s in dispatched[-2:]] == ["cand", None]

    counts = {v["label"]: v for v in _status(platform)["active"]["versions"]}
    tallies = {k: (v["answers"], v["rated"], v["up"], v["down"]) for k, v in counts.items()}
    assert tallies == {"cand": (1, 1, 1, 0), "base": (1, 1, 0, 1)}
    assert counts["cand"]["up_rate"] == 1.0 and counts["base"]["up_rate"] == 0.0

    # A second rollout cannot start beside the first.
    busy = _rollout(platform, "operator", {"candidate": "bad", "share": 0.5})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "rollout_running"

    # Promotion: the candidate is current for everyone, the rollout is in the history.
    promoted = _post(platform, "promote")
    assert promoted.status_code == 200, promoted.text
    status = promoted.json()
    assert status["active"] is None and status["models"]["current"] == "cand"
    assert status["history"][0]["outcome"] == "promoted"
    assert _chat(platform, "bob") == (cand_answer, None)
    card = httpx.get(f"{platform.moe.url}/v1/models", timeout=10).json()["data"][0]
    assert card["id"] == MODEL and card["metadata"]["version"] == "cand"

    # Rollback (no rollout running): the last promotion is undone.
    rolled = _post(platform, "rollback")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["models"]["current"] is None
    assert _chat(platform, "bob") == (base_answer, None)
    nothing = _post(platform, "rollback")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_roll_back"


@pytest.mark.parametrize(
    ("version", "code"), [("bad", "eval_gate_failed"), ("ungated", "eval_gate_missing")]
)
def test_the_eval_gate_blocks_promotion(platform: Platform, version: str, code: str) -> None:
    started = _rollout(platform, "operator", {"candidate": version, "share": 1.0})
    assert started.status_code == 200, started.text
    refused = _post(platform, "promote")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == code
    status = _status(platform)
    assert status["active"]["rollout"]["candidate"] == version  # the rollout goes on
    assert status["models"]["current"] is None
    # Rolling back ends it and moe_svc stops serving the version.
    rolled = _post(platform, "rollback")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["history"][0]["outcome"] == "rolled_back"
    loaded = {v["id"]: v["loaded"] for v in rolled.json()["models"]["versions"]}
    assert loaded[version] is False
    assert platform.moe_answer(version).status_code == 404


def test_command_line(platform: Platform) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.rollout", "--url", platform.gateway.url, *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    key = platform.keys["operator"]
    shown = run("--key", key, "status")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["models"]["model"] == MODEL
    refused = run("--key", platform.keys["alice"], "start", "cand", "--share", "0.5")
    assert refused.returncode == 1 and "403" in refused.stderr
    started = run("--key", key, "start", "cand", "--share", "0.25")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["active"]["rollout"]["share"] == 0.25
    ended = run("--key", key, "rollback")
    assert ended.returncode == 0, ended.stderr
    assert json.loads(ended.stdout)["active"] is None
