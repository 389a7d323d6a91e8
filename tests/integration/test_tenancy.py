"""Two tenants on one platform, driven only through the real gateway with their own keys.

The real router_svc, memory_svc (real Redis), rag_svc, reasoning_svc and tools_svc
behind the real gateway; moe_svc and creative_svc are the scripted stand-ins of
tests/helpers/router_fakes.py, which record every prompt they are sent. Keys are
made with the admin CLI as an operator would. Every cross-tenant read, write, rating,
listing and session or user takeover fails as if the thing did not exist and changes
nothing; the same calls between two keys of one tenant work.
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

from tests.helpers.servers import REPO_ROOT, RunningServer
from tests.integration.gateway_support import keyed_client
from tests.integration.pipeline_stack import PipelineStack, gateway_in_front, pipeline_stack

pytestmark = pytest.mark.integration

SECRET = "my locker code is 4471-ZEBRA"


@dataclass
class Tenancy:
    stack: PipelineStack
    gateway: RunningServer
    keys: dict[str, str]

    def http(self, who: str) -> httpx.Client:
        return keyed_client(self.gateway, self.keys[who], 120)

    def openai(self, who: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway.url}/v1", api_key=self.keys[who], max_retries=0, timeout=120
        )

    def prompts(self) -> str:
        """Everything the stand-in core model was sent so far, as one text."""
        return json.dumps(httpx.get(f"{self.stack.fake.url}/requests", timeout=10).json())


def _create_key(redis_url: str, tenant: str, *extra: str) -> str:
    command = ["gateway.admin", "--redis-url", redis_url, "create", "--tenant", tenant, "--json"]
    result = subprocess.run(
        [sys.executable, "-m", *command, *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["key"])


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    root: Path = tmp_path_factory.mktemp("tenancy")
    with pipeline_stack(root) as stack:
        keys = {
            "alice": _create_key(stack.redis.url, "alpha", "--name", "alice"),
            "alice2": _create_key(stack.redis.url, "alpha", "--name", "alice-laptop"),
            "bob": _create_key(stack.redis.url, "beta", "--name", "bob"),
            "admin": _create_key(stack.redis.url, "ops", "--role", "admin"),
        }
        # The platform's shared knowledge, as the launcher's first start builds it.
        wiki = httpx.post(
            f"{stack.rag.url}/v1/collections", json={"name": "wiki", "shared": True}, timeout=30
        )
        assert wiki.status_code == 201, wiki.text
        json_logs = {"GATEWAY_LOG_JSON": "true", "GATEWAY_AUTH_REQUIRED": "true"}
        with gateway_in_front(stack, root, **json_logs) as gateway:
            yield Tenancy(stack, gateway, keys)


def _chat(client: openai.OpenAI, text: str, **extra_body: Any) -> Any:
    return client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": text}], extra_body=extra_body
    )


@pytest.fixture(scope="module")
def alice_turn(tenancy: Tenancy) -> dict[str, str]:
    """Alice tells the assistant a secret in session `shared-name`, then rates the answer."""
    alice = tenancy.openai("alice")
    completion = _chat(alice, f"Hi! {SECRET}", session_id="shared-name", user="u1")
    message_id = (completion.model_extra or {})["message_id"]
    with tenancy.http("alice") as alice_http:
        rated = alice_http.post(
            "/feedback",
            json={"session_id": "shared-name", "message_id": message_id, "rating": 1},
        )
        assert rated.status_code == 201, rated.text
    return {"message_id": message_id}


def test_another_tenant_never_sees_a_session_of_the_same_id(
    tenancy: Tenancy, alice_turn: dict[str, str]
) -> None:
    httpx.delete(f"{tenancy.stack.fake.url}/requests", timeout=10)
    _chat(tenancy.openai("bob"), "Hi! What did I tell you before?", session_id="shared-name")
    # Bob's prompt holds nothing of Alice's conversation.
    assert "4471-ZEBRA" not in tenancy.prompts()
    # And Alice's session holds nothing of Bob's turn.
    httpx.delete(f"{tenancy.stack.fake.url}/requests", timeout=10)
    _chat(tenancy.openai("alice2"), "Hi! Do you remember what I said?", session_id="shared-name")
    prompts = tenancy.prompts()
    assert "4471-ZEBRA" in prompts, "a second key of the same tenant continues the session"
    assert "What did I tell you before" not in prompts


def test_feedback_is_listed_and_rated_only_inside_its_tenant(
    tenancy: Tenancy, alice_turn: dict[str, str]
) -> None:
    with tenancy.http("bob") as bob:
        listed = bob.get("/feedback").json()
        assert listed["data"] == []
        # Rating Alice's answer is rating something that does not exist for Bob.
        overwrite = bob.post(
            "/feedback",
            json={
                "session_id": "shared-name",
                "message_id": alice_turn["message_id"],
                "rating": -1,
            },
        )
        assert overwrite.status_code == 404
    with tenancy.http("alice2") as alice2:
        mine = alice2.get("/feedback").json()["data"]
    assert [(f["message_id"], f["rating"]) for f in mine] == [(alice_turn["message_id"], 1)]
    assert SECRET not in json.dumps(listed)
    with tenancy.http("admin") as admin:
        everyone = admin.get("/feedback").json()["data"]
    assert alice_turn["message_id"] in {f["message_id"] for f in everyone}


def test_a_user_id_is_a_name_inside_its_tenant(
    tenancy: Tenancy, alice_turn: dict[str, str]
) -> None:
    # Bob claims Alice's user id: his session is filed under his tenant's "u1", not hers.
    _chat(tenancy.openai("bob"), "Hello there", session_id="bob-1", user="u1")
    memory = tenancy.stack.memory.url
    alpha = {"X-Tenant-ID": "alpha", "X-Key-Role": "member", "X-Key-Scopes": "chat"}
    sessions = httpx.get(f"{memory}/v1/users/u1/sessions", headers=alpha, timeout=10).json()
    assert {s["id"] for s in sessions["data"]} == {"shared-name"}


def test_collections_belong_to_their_tenant(tenancy: Tenancy) -> None:
    document = {"documents": [{"id": "plan", "text": "Alpha's launch date is 9 May."}]}
    with tenancy.http("alice") as alice, tenancy.http("bob") as bob:
        assert alice.post("/collections", json={"name": "notes"}).status_code == 201
        assert alice.post("/collections/notes/documents", json=document).status_code == 200
        # Alice's collection does not exist for Bob: not listed, not searchable, not writable.
        assert "notes" not in {c["name"] for c in bob.get("/collections").json()["data"]}
        hidden = bob.post("/collections/notes/search", json={"query": "launch date"})
        assert hidden.status_code == 404
        other = {"documents": [{"id": "plan", "text": "Beta has no launch date."}]}
        assert bob.post("/collections/notes/documents", json=other).status_code == 404
        # Bob's own `notes` is independent: the same document id does not replace Alice's.
        assert bob.post("/collections", json={"name": "notes"}).status_code == 201
        assert bob.post("/collections/notes/documents", json=other).status_code == 200
        found = alice.post("/collections/notes/search", json={"query": "launch date", "k": 5})
        assert found.status_code == 200, found.text
        texts = [r["text"] for r in found.json()["results"]]
        assert texts and all("9 May" in t for t in texts)
        # Alice's second key is the same tenant: it sees her collection.
    with tenancy.http("alice2") as alice2:
        assert "notes" in {c["name"] for c in alice2.get("/collections").json()["data"]}


def test_only_admins_write_the_shared_knowledge(tenancy: Tenancy) -> None:
    document = {"documents": [{"id": "planted", "text": "The Moon is made of cheese."}]}
    with tenancy.http("bob") as bob:
        refused = bob.post("/collections/wiki/documents", json=document)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    with tenancy.http("admin") as admin:
        accepted = admin.post("/collections/wiki/documents", json=document)
    assert accepted.status_code == 200, accepted.text


def test_every_log_line_of_a_call_names_its_key_and_tenant(
    tenancy: Tenancy, alice_turn: dict[str, str]
) -> None:
    with tenancy.http("bob") as bob:
        response = bob.get("/models", headers={"X-Request-ID": "bob-trace-1"})
    request_id = response.headers["X-Request-ID"]
    assert request_id != "bob-trace-1"
    lines = [
        json.loads(line)
        for line in tenancy.gateway.logs().splitlines()
        if line.startswith("{") and request_id in line
    ]
    assert lines, "the gateway logged the call"
    bob_id = tenancy.keys["bob"].split("-")[2]
    for line in lines:
        assert line["tenant"] == "beta" and line["key_id"] == bob_id
        assert line["client_request_id"] == "bob-trace-1"
