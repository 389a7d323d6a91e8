"""Feedback as training data: ratings and picks through the real gateway and memory_svc.

The gateway (keys required) sends feedback to a real memory_svc on a real Redis.
Conversations are stored the way router_svc stores them (`<run>-user`, then
`<run>-assistant`), one tenant's session named like the other's. An admin key
exports its own tenant's answers as KTO examples and DPO pairs; a member key
gets 403, and no tenant's export shows another tenant's feedback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from memory_svc import keys
from memory_svc.feedback import feedback_id
from tests.helpers.servers import RunningRedis, RunningServer, start_redis
from tests.integration.gateway_support import admin, gateway_stack, keyed_client
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration

SECRET = "beta's private answer 7731"


@dataclass
class Platform:
    gateway: RunningServer
    memory: RunningServer
    memory_redis: RunningRedis
    keys: dict[str, str]

    def http(self, who: str) -> httpx.Client:
        return keyed_client(self.gateway, self.keys[who], 60)

    def store(self, tenant: str, sid: str, turns: list[tuple[str, str, str]]) -> None:
        """Append (id, role, content) turns as router_svc does for `tenant`."""
        headers = {"X-Tenant-ID": tenant, "X-Key-Role": "member", "X-Key-Scopes": "chat"}
        messages = [{"id": i, "role": role, "content": text} for i, role, text in turns]
        reply = httpx.post(
            f"{self.memory.url}/v1/sessions/{sid}/messages",
            json={"messages": messages},
            headers=headers,
            timeout=30,
        )
        reply.raise_for_status()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root: Path = tmp_path_factory.mktemp("feedback_export")
    memory_redis = start_redis(root / "memory-redis")
    memory: list[RunningServer] = []

    def real_memory(_: RunningServer) -> RunningServer:
        memory.append(start_memory(root / "memory", memory_redis.url))
        return memory[0]

    env = {"GATEWAY_AUTH_REQUIRED": "true"}
    try:
        with gateway_stack(root, env, real={"memory_svc": real_memory}) as (gateway, _, redis_):

            def key(tenant: str, *extra: str) -> str:
                made = admin(redis_, "create", "--tenant", tenant, "--json", *extra)
                return str(json.loads(made)["key"])

            yield Platform(
                gateway,
                memory[0],
                memory_redis,
                {
                    "alice": key("alpha"),
                    "alpha-admin": key("alpha", "--role", "admin"),
                    "bob": key("beta"),
                    "beta-admin": key("beta", "--role", "admin"),
                },
            )
    finally:
        memory_redis.stop()


def _rate(client: httpx.Client, sid: str, mid: str, rating: int, **extra: str) -> dict[str, Any]:
    reply = client.post(
        "/feedback", json={"session_id": sid, "message_id": mid, "rating": rating, **extra}
    )
    assert reply.status_code in (200, 201), reply.text
    body: dict[str, Any] = reply.json()
    return body


def _export(client: httpx.Client, format: str) -> list[dict[str, Any]]:
    reply = client.get("/feedback/export", params={"format": format})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in reply.text.splitlines()]


def _turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_ratings_and_picks_export_as_kto_and_dpo_inside_their_tenant(platform: Platform) -> None:
    # Alpha: a greeting, then a maths question asked twice (regenerated); the user picks
    # the second answer. Two more sessions ask one question, rated differently.
    platform.store(
        "alpha",
        "s1",
        [
            ("r0-user", "user", "Hi"),
            ("r0-assistant", "assistant", "Hello! How can I help?"),
            ("r1-user", "user", "What is 2+2?"),
            ("r1-assistant", "assistant", "2+2 is 5."),
            ("r2-user", "user", "What is 2+2?"),
            ("r2-assistant", "assistant", "2+2 is 4."),
        ],
    )
    capital = "What is the capital of France?"
    platform.store(
        "alpha", "s2", [("r3-user", "user", capital), ("r3-assistant", "assistant", "Paris.")]
    )
    platform.store(
        "alpha", "s3", [("r4-user", "user", capital), ("r4-assistant", "assistant", "Lyon.")]
    )
    # Beta's session has the same name as alpha's.
    platform.store(
        "beta",
        "s1",
        [("r0-user", "user", "Tell me a secret"), ("r0-assistant", "assistant", SECRET)],
    )

    with platform.http("alice") as alice:
        _rate(alice, "s1", "r0-assistant", 1)
        picked = _rate(alice, "s1", "r2-assistant", 1, preferred_over="r1-assistant")
        _rate(alice, "s2", "r3-assistant", 1)
        _rate(alice, "s3", "r4-assistant", -1)
        # A pick must compare two answers of the session.
        same = alice.post(
            "/feedback",
            json={"session_id": "s1", "message_id": "r2-assistant", "rating": 1,
                  "preferred_over": "r2-assistant"},
        )  # fmt: skip
        assert same.status_code == 400 and same.json()["error"]["param"] == "preferred_over"
        missing = alice.post(
            "/feedback",
            json={"session_id": "s1", "message_id": "r2-assistant", "rating": 1,
                  "preferred_over": "r9-assistant"},
        )  # fmt: skip
        assert missing.status_code == 404
        # Exporting is for admin keys: a member gets the shared error shape.
        refused = alice.get("/feedback/export")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admin_required"
    # The regenerated answer's context leaves out the first attempt.
    assert picked["prompt"] == "What is 2+2?"
    assert picked["context"] == [_turn("user", "Hi"), _turn("assistant", "Hello! How can I help?")]
    assert picked["rejected_content"] == "2+2 is 5."
    with platform.http("bob") as bob:
        _rate(bob, "s1", "r0-assistant", -1)

    with platform.http("alpha-admin") as alpha:
        kto = _export(alpha, "kto")
        dpo = _export(alpha, "dpo")
        bad_format = alpha.get("/feedback/export", params={"format": "csv"})
    assert bad_format.status_code == 400 and "error" in bad_format.json()

    greeting = [_turn("user", "Hi"), _turn("assistant", "Hello! How can I help?")]
    assert {(json.dumps(e["prompt"]), e["completion"][0]["content"], e["label"]) for e in kto} == {
        (json.dumps([_turn("user", "Hi")]), "Hello! How can I help?", True),
        (json.dumps([*greeting, _turn("user", "What is 2+2?")]), "2+2 is 4.", True),
        (json.dumps([_turn("user", capital)]), "Paris.", True),
        (json.dumps([_turn("user", capital)]), "Lyon.", False),
    }
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in dpo] == [
        ("2+2 is 4.", "2+2 is 5."),  # the pick
        ("Paris.", "Lyon."),  # two answers to one prompt, rated differently
    ]
    assert dpo[0]["prompt"] == [*greeting, _turn("user", "What is 2+2?")]
    assert SECRET not in json.dumps(kto + dpo)

    with platform.http("beta-admin") as beta:
        beta_kto = _export(beta, "kto")
        beta_raw = _export(beta, "raw")
    assert [(e["completion"][0]["content"], e["label"]) for e in beta_kto] == [(SECRET, False)]
    assert {r["tenant"] for r in beta_raw} == {"beta"}


def test_records_stored_before_prompts_were_kept_still_export(platform: Platform) -> None:
    # A record as the first version wrote it: no prompt, no context, no pick.
    space = keys.space("alpha")
    fid = feedback_id("old-session", "m1")
    client = redis.Redis.from_url(platform.memory_redis.url)
    try:
        client.hset(
            space.feedback(fid),
            mapping={
                "id": fid,
                "session_id": "old-session",
                "message_id": "m1",
                "rating": "1",
                "user_id": "",
                "message_role": "assistant",
                "message_content": "an answer from last year",
                "created_at": "1700000000.0",
                "updated_at": "1700000000.0",
            },
        )
        client.zadd(space.feedback_all, {fid: 1700000000.0})
    finally:
        client.close()
    with platform.http("alpha-admin") as alpha:
        raw = _export(alpha, "raw")
        kto = _export(alpha, "kto")
        listed = alpha.get("/feedback", params={"tenant": "alpha"}).json()["data"]
    old = next(r for r in raw if r["id"] == fid)
    assert old["prompt"] is None and old["context"] == [] and old["preferred_over"] is None
    assert fid in {f["id"] for f in listed}
    # Without its prompt it is no training example.
    assert "an answer from last year" not in json.dumps(kto)
