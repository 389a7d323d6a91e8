"""The tenant key spaces: the first version's names for "default", no key shared by two spaces."""

from __future__ import annotations

import random
import string

import pytest

from common.caller import INTERNAL_CALLER, Caller, caller_var
from common.errors import Forbidden
from memory_svc import keys
from memory_svc.feedback import listed_tenant
from memory_svc.keys import KeySpace


def every_key(space: KeySpace, ident: str) -> set[str]:
    uk = space.user(ident)
    return {
        *space.session(ident).all(),
        *(getattr(uk, name) for name in uk.__slots__),
        space.feedback(ident),
        space.feedback_all,
        space.feedback_counts,
        space.feedback_session(ident),
        space.feedback_session_counts(ident),
    }


def test_the_default_tenant_keeps_the_first_versions_names() -> None:
    default = keys.space("default")
    assert default.session("s1").meta == "mem:s:s1:meta"
    assert default.user("u1").index == "mem:u:u1:keys"
    assert default.feedback("fb_1") == "mem:fb:fb_1"
    assert (default.feedback_all, default.feedback_counts) == ("mem:fb:all", "mem:fb:n")
    assert default.feedback_session_counts("s1") == "mem:fb:s:s1:n"
    assert keys.space("acme").session("s1").meta == "mem:t:acme:s:s1:meta"


def test_no_key_belongs_to_two_spaces() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_lowercase + string.digits + "_-"
    # Names chosen to look like key segments ("t", "s", "u", "fb") as well as random ones.
    tenants = ["default", "t", "s", "u", "fb", "fb-tenants", "all", "n"]
    tenants += ["".join(rng.choices(alphabet, k=rng.randint(1, 6))).lstrip("_-") or "x"]
    ids = ["t", "s", "u", "fb", "all", "n", "keys", "state", "mem", "meta", "msgs", "x.y@z+1=2"]
    owner: dict[str, str] = {}
    for tenant in set(tenants):
        for ident in ids:
            for key in every_key(keys.space(tenant), ident):
                assert owner.setdefault(key, tenant) == tenant, key
                assert key != keys.FEEDBACK_TENANTS


def test_a_tenant_name_that_could_spell_keys_is_refused() -> None:
    for bad in ("a:b", "", "A", "a/b", "x" * 64):
        with pytest.raises(ValueError):
            keys.space(bad)


def test_current_is_the_space_of_the_callers_tenant() -> None:
    assert keys.current().tenant == "default"
    token = caller_var.set(Caller(tenant="acme", role="member", scopes=frozenset()))
    try:
        assert keys.current().session("s1").meta == "mem:t:acme:s:s1:meta"
    finally:
        caller_var.reset(token)


def test_members_list_their_tenant_and_admins_every_tenant_or_one() -> None:
    member = Caller(tenant="acme", role="member", scopes=frozenset())
    admin = Caller(tenant="ops", role="admin", scopes=frozenset())
    assert listed_tenant(member, None) == "acme"
    assert listed_tenant(member, "acme") == "acme"
    with pytest.raises(Forbidden):
        listed_tenant(member, "globex")
    assert listed_tenant(admin, None) is None
    assert listed_tenant(admin, "globex") == "globex"
    assert listed_tenant(INTERNAL_CALLER, None) is None
