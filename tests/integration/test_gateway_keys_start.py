"""What the gateway does with its key store on start: bootstrap key, first-version keys, auth off.

Real gateways (started and restarted) on one real Redis, in front of `gateway_fakes`,
which records the caller headers each upstream call carries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from common.caller import ALL_SCOPES, DEFAULT_MEMBER_SCOPES
from gateway.keys import new_key
from tests.helpers.servers import RunningRedis, RunningServer, start_fake, start_redis
from tests.integration.gateway_support import admin, start_gateway

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Who invented the telephone?"}]}
AUTH_ON = {"GATEWAY_AUTH_REQUIRED": "true", "GATEWAY_LOG_JSON": "true"}


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningRedis, RunningServer]]:
    log_dir = tmp_path_factory.mktemp("gateway_keys_start")
    store = start_redis(log_dir / "redis")
    fake = start_fake("tests.helpers.gateway_fakes", log_dir, name="gateway_fakes")
    yield store, fake
    fake.stop()
    store.stop()


@pytest.fixture
def store(backends: tuple[RunningRedis, RunningServer]) -> Iterator[RunningRedis]:
    """The module's Redis, emptied for each test."""
    with redis.Redis.from_url(backends[0].url) as client:
        client.flushdb()
    yield backends[0]


@pytest.fixture
def fake(backends: tuple[RunningRedis, RunningServer]) -> RunningServer:
    return backends[1]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _caller_upstream_saw(gateway: RunningServer, fake: RunningServer, key: str | None) -> Any:
    """Chat through the gateway; the caller headers the upstream received."""
    headers = _auth(key) if key else {}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 200, response.text
    return httpx.get(f"{fake.url}/seen").json()[-1]["caller"]


def _keys(store: RunningRedis) -> list[dict[str, Any]]:
    return [json.loads(line) for line in admin(store, "list").splitlines()]


def _log_records(server: RunningServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def test_a_bootstrap_key_from_the_environment_is_an_admin(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    key = new_key()
    gateway = start_gateway(tmp_path, store, fake, {**AUTH_ON, "GATEWAY_BOOTSTRAP_KEY": key})
    try:
        assert httpx.get(f"{gateway.url}/v1/models", headers=_auth(key)).status_code == 200
        caller = _caller_upstream_saw(gateway, fake, key)
        assert caller["X-Tenant-ID"] == "default"
        assert caller["X-Key-Role"] == "admin"
        assert set(caller["X-Key-Scopes"].split()) == set(ALL_SCOPES)
        [record] = _keys(store)
        assert record["name"] == "bootstrap" and record["role"] == "admin"
        assert key not in gateway.logs()  # the key itself is never logged
        with redis.Redis.from_url(store.url) as client:
            dump = b"".join(k + b"".join(client.hvals(k)) for k in client.keys("gateway:key*"))
        assert dump and key.encode() not in dump  # only its hash is stored
    finally:
        gateway.stop()


def test_a_bootstrap_key_file_is_registered_once(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    key = new_key()
    secret = tmp_path / "gateway_bootstrap_key"
    secret.write_text(key + "\n")
    env = {**AUTH_ON, "GATEWAY_BOOTSTRAP_KEY_FILE": str(secret)}
    for start in ("first", "second"):
        gateway = start_gateway(tmp_path / start, store, fake, env)
        try:
            response = httpx.get(f"{gateway.url}/v1/models", headers=_auth(key))
            assert response.status_code == 200, response.text
        finally:
            gateway.stop()
    [record] = _keys(store)  # the restart registered nothing new
    assert record["role"] == "admin" and record["scopes"] == sorted(ALL_SCOPES)
    # A revoked bootstrap key stays revoked across restarts.
    admin(store, "revoke", record["id"])
    gateway = start_gateway(tmp_path / "third", store, fake, env)
    try:
        refused = httpx.get(f"{gateway.url}/v1/models", headers=_auth(key))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "revoked_api_key"
    finally:
        gateway.stop()


def test_a_weak_bootstrap_key_stops_the_gateway_without_showing_it(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    weak = "sk-gw-abc-short"
    with pytest.raises(RuntimeError, match="bootstrap key must have the form") as failed:
        start_gateway(tmp_path, store, fake, {**AUTH_ON, "GATEWAY_BOOTSTRAP_KEY": weak})
    assert weak not in str(failed.value)
    assert _keys(store) == []


def _write_first_version_key(store: RunningRedis, name: str) -> tuple[str, str]:
    """A key as the first version stored it (no tenant, role or scopes): (key, its id)."""
    key = new_key()
    ident = key.split("-")[2]
    digest = hashlib.sha256(key.encode()).hexdigest()
    record = {"id": ident, "name": name, "created_at": str(time.time()), "revoked": "0",
              "rpm_limit": "", "tpm_limit": ""}  # fmt: skip
    with redis.Redis.from_url(store.url) as client:
        client.hset(f"gateway:key:{digest}", mapping=record)
        client.hset("gateway:key_ids", ident, digest)
    return key, ident


def test_first_version_keys_become_members_of_the_default_tenant(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    old, old_id = _write_first_version_key(store, "ci")
    local, local_id = _write_first_version_key(store, "local")
    gateway = start_gateway(tmp_path / "first", store, fake, AUTH_ON)
    try:
        caller = _caller_upstream_saw(gateway, fake, old)
        assert caller["X-Tenant-ID"] == "default" and caller["X-Key-ID"] == old_id
        assert caller["X-Key-Role"] == "member"
        assert caller["X-Key-Scopes"] == " ".join(sorted(DEFAULT_MEMBER_SCOPES))
        # The one `make up` made is no exception: a member too.
        assert _caller_upstream_saw(gateway, fake, local)["X-Key-Role"] == "member"
        [migrated] = [r for r in _log_records(gateway) if "migrated_keys" in r]
        assert migrated["migrated_keys"] == 2
    finally:
        gateway.stop()
    with redis.Redis.from_url(store.url, decode_responses=True) as client:
        fields = client.hgetall(f"gateway:key:{hashlib.sha256(old.encode()).hexdigest()}")
    assert fields["tenant"] == "default" and fields["role"] == "member"
    listed = {k["id"]: k for k in _keys(store)}
    assert listed[old_id]["tenant"] == "default" and listed[local_id]["role"] == "member"
    # Written once: the next start has nothing to migrate.
    again = start_gateway(tmp_path / "second", store, fake, AUTH_ON)
    again.stop()
    assert not [r for r in _log_records(again) if "migrated_keys" in r]


def test_make_up_replaces_a_first_version_local_key_with_an_admin_key(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    legacy, legacy_id = _write_first_version_key(store, "local")
    key_file = tmp_path / "local_api_key"
    key_file.write_text(legacy + "\n")
    gateway = start_gateway(tmp_path, store, fake, AUTH_ON)
    try:
        local = admin(store, "local", "--file", str(key_file))
        assert local != legacy and key_file.read_text().strip() == local
        caller = _caller_upstream_saw(gateway, fake, local)
        assert caller["X-Key-Role"] == "admin" and caller["X-Tenant-ID"] == "default"
        assert set(caller["X-Key-Scopes"].split()) == set(ALL_SCOPES)
        assert admin(store, "local", "--file", str(key_file)) == local  # kept from now on
        # Only that file knew the replaced key: it is revoked.
        revoked = httpx.get(f"{gateway.url}/v1/models", headers=_auth(legacy))
        assert revoked.status_code == 403
        assert {k["id"]: k["revoked"] for k in _keys(store)}[legacy_id] is True
    finally:
        gateway.stop()


def test_auth_off_is_explicit_and_runs_as_a_default_member(
    tmp_path: Path, store: RunningRedis, fake: RunningServer
) -> None:
    gateway = start_gateway(
        tmp_path, store, fake, {"GATEWAY_AUTH_REQUIRED": "false", "GATEWAY_LOG_JSON": "true"}
    )
    try:
        caller = _caller_upstream_saw(gateway, fake, None)
        assert caller["X-Tenant-ID"] == "default" and caller["X-Key-ID"] is None
        assert caller["X-Key-Role"] == "member"
        assert caller["X-Key-Scopes"] == " ".join(sorted(DEFAULT_MEMBER_SCOPES))
        warnings = [r["msg"] for r in _log_records(gateway) if r["level"] == "warning"]
        assert any("WITHOUT an API key" in w for w in warnings), warnings
    finally:
        gateway.stop()
