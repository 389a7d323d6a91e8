"""`python -m gateway.admin` as an operator runs it, against a real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.caller import ALL_SCOPES, DEFAULT_MEMBER_SCOPES
from gateway.keys import key_id
from tests.helpers.servers import REPO_ROOT, RunningRedis, start_redis
from tests.integration.gateway_support import admin


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    running = start_redis(Path(tmp_path_factory.mktemp("gateway_keys_admin")))
    yield running
    running.stop()


def _refused(store: RunningRedis, *args: str) -> str:
    """Run the CLI expecting a usage error; its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--redis-url", store.url, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result
    return result.stderr


def test_create_names_tenant_role_and_scopes_and_list_shows_them(store: RunningRedis) -> None:
    made = json.loads(
        admin(store, "create", "--tenant", "acme-2", "--role", "admin", "--scopes",
              "chat,tools:python", "--name", "ops", "--rpm", "7", "--json")
    )  # fmt: skip
    assert key_id(made["key"]) == made["id"]
    assert (made["tenant"], made["role"], made["scopes"]) == ("acme-2", "admin",
                                                              ["chat", "tools:python"])  # fmt: skip
    plain = admin(store, "create")
    every = json.loads(admin(store, "create", "--scopes", "all", "--json"))
    assert every["scopes"] == sorted(ALL_SCOPES)
    listed = {k["id"]: k for k in map(json.loads, admin(store, "list").splitlines())}
    assert listed[made["id"]] == {**{k: v for k, v in made.items() if k != "key"}}
    default = listed[str(key_id(plain))]
    assert (default["tenant"], default["role"]) == ("default", "member")
    assert default["scopes"] == sorted(DEFAULT_MEMBER_SCOPES)
    assert all(set(k) >= {"id", "name", "tenant", "role", "scopes", "revoked"}
               for k in listed.values())  # fmt: skip
    dump = admin(store, "list")
    assert made["key"] not in dump and plain not in dump


def test_bad_tenants_scopes_and_roles_are_refused_clearly(store: RunningRedis) -> None:
    before = admin(store, "list")
    for tenant in ("Acme", "a:b", "../x", "", "a" * 64):
        assert "invalid tenant name" in _refused(store, "create", "--tenant", tenant)
    assert "unknown scope" in _refused(store, "create", "--scopes", "chat,root")
    assert "invalid choice" in _refused(store, "create", "--role", "owner")
    assert admin(store, "list") == before  # nothing was created


def test_generate_prints_a_usable_bootstrap_key_and_stores_nothing(store: RunningRedis) -> None:
    before = admin(store, "list")
    first, second = admin(store, "generate"), admin(store, "generate")
    assert first != second and key_id(first) is not None
    assert len(first.split("-", 3)[3]) >= 32
    assert admin(store, "list") == before
