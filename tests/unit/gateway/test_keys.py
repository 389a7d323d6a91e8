"""Key records, the gateway's key settings and its checks of path names and queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.caller import ALL_SCOPES, DEFAULT_MEMBER_SCOPES
from common.errors import BadRequest
from gateway.keys import ApiKey, InvalidKeySpec, key_id, new_key
from gateway.passthrough import upstream_path
from gateway.schemas import FeedbackQuery
from gateway.settings import GatewaySettings


def test_a_first_version_record_reads_as_a_default_member() -> None:
    legacy = {b"id": b"ab12", b"name": b"local", b"created_at": b"1.5", b"revoked": b"0",
              b"rpm_limit": b"", b"tpm_limit": b"30"}  # fmt: skip
    key = ApiKey.from_redis(legacy)
    assert (key.tenant, key.role, key.scopes) == (
        "default",
        "member",
        frozenset(DEFAULT_MEMBER_SCOPES),
    )
    assert key.tpm_limit == 30 and key.rpm_limit is None
    caller = key.caller()
    assert caller.key_id == "ab12" and not caller.is_admin and not caller.allows("tools:python")


def test_a_record_round_trips_and_an_empty_scope_list_grants_nothing() -> None:
    key = ApiKey("ff", "ops", 2.0, tenant="acme", role="admin", scopes=frozenset(ALL_SCOPES))
    assert ApiKey.from_redis(key.to_redis()) == key
    bare = ApiKey("ee", "", 2.0, scopes=frozenset())
    assert ApiKey.from_redis(bare.to_redis()).scopes == frozenset()
    # A scope this version does not know grants nothing.
    future = {**key.to_redis(), "scopes": "chat admin:everything"}
    assert ApiKey.from_redis(future).scopes == {"chat"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant", "Acme"), ("tenant", "a:b"), ("role", "owner"), ("scopes", frozenset({"root"}))],
)
def test_records_outside_the_allowed_shapes_are_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidKeySpec):
        ApiKey("ab", "", 0.0, **{field: value})


def test_new_keys_have_the_documented_form() -> None:
    key = new_key()
    assert key.startswith("sk-gw-") and key_id(key) is not None
    assert key_id("sk-gw-XYZ-secret") is None and key_id("sk-gw-ab-se\ncret") is None


@pytest.mark.parametrize("name", [".#", "\x00", "a\r\nb", "..", "a.b", "a/b", "", "x" * 65, "é"])
def test_path_names_outside_the_pattern_are_400(name: str) -> None:
    with pytest.raises(BadRequest) as refused:
        upstream_path("/v1/collections/{collection}/documents", collection=name)
    assert refused.value.code == "invalid_collection_name"
    assert refused.value.param == "collection"


def test_good_path_names_are_filled_in() -> None:
    path = upstream_path("/v1/collections/{collection}/documents", collection="My_docs-2")
    assert path == "/v1/collections/My_docs-2/documents"


def test_the_feedback_query_keeps_only_documented_parameters() -> None:
    query = FeedbackQuery.model_validate({"session_id": "s-1", "rating": "-1", "offset": "3"})
    assert query.model_dump(exclude_none=True) == {"session_id": "s-1", "rating": -1, "offset": 3}
    for bad in ({"rating": "0"}, {"limit": "1001"}, {"tenant": "A"}, {"session_id": "a\r\nb"},
                {"debug": "1"}):  # fmt: skip
        with pytest.raises(ValidationError):
            FeedbackQuery.model_validate(bad)


def test_auth_is_on_by_default_and_off_only_on_loopback() -> None:
    assert GatewaySettings().auth_required is True
    assert GatewaySettings(auth_required=False, host="127.0.0.1").auth_required is False
    with pytest.raises(ValidationError, match="loopback"):
        GatewaySettings(auth_required=False, host="0.0.0.0")


def test_the_bootstrap_key_comes_from_one_place(tmp_path: Path) -> None:
    assert GatewaySettings(bootstrap_key="", bootstrap_key_file="").read_bootstrap_key() is None
    key = new_key()
    assert GatewaySettings(bootstrap_key=f" {key}\n").read_bootstrap_key() == key
    secret = tmp_path / "gateway_bootstrap_key"
    secret.write_text(key + "\n")
    assert GatewaySettings(bootstrap_key_file=secret).read_bootstrap_key() == key
    with pytest.raises(ValidationError, match="not both"):
        GatewaySettings(bootstrap_key=key, bootstrap_key_file=secret)
    # The key never shows in the settings' repr.
    assert key not in repr(GatewaySettings(bootstrap_key=key))
