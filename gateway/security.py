"""Who may call the gateway and how much: API keys, scopes and per-key rate limits.

Every `/v1` route names its scope with `authorize(scope)`, a route dependency
that runs before the body is read. One Redis script finds the caller's key,
checks its scope and checks and charges one request and the prompt's
estimated tokens (from `Content-Length`) against the key's limits:

- the key store is empty: 503 `no_api_keys`, saying how to create the first key
  (auth never turns itself off);
- no key, a malformed or unknown one: 401; revoked: 403;
- the key lacks the route's scope: 403 `insufficient_scope` (nothing charged);
- over a limit: 429 with `Retry-After`.

The verified key's `common.caller.Caller` is set in `caller_var`, so it
travels with every upstream call and names the tenant and key in the logs.
A chunked body (no `Content-Length`) is read after the key is verified and its
tokens charged in a second round trip. The `x-ratelimit-*` headers go on the
answer through the request's state (see `gateway.edge`); tokens of the
answer are charged afterwards with `charge_completion`.

`GATEWAY_AUTH_REQUIRED=false` (development only, loopback only) runs every
call without a key as tenant `default`, role `member`, limited per client address.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.caller import ALL_SCOPES, DEFAULT_MEMBER_SCOPES, DEFAULT_TENANT, Caller, caller_var
from common.errors import (
    Forbidden,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    Unauthorized,
)
from gateway.keys import (
    BOOTSTRAP_SECRET_MIN_CHARS,
    KEY_PREFIX,
    ApiKey,
    InvalidKeySpec,
    KeyStore,
    key_id,
    scopes_text,
)
from gateway.ratelimit import CHECK_LIMITS_LUA, WINDOW_S, Decision, Limit, RateLimiter
from gateway.settings import GatewaySettings

__all__ = [
    "ANONYMOUS_CALLER",
    "NO_KEYS_MESSAGE",
    "Admission",
    "Gatekeeper",
    "authorize",
    "charge_completion",
    "estimate_tokens",
    "prepare_key_store",
]

logger = logging.getLogger("gateway.security")

RATELIMIT_HEADERS_STATE = "ratelimit_headers"
_ADMISSION_STATE = "admission"

NO_KEYS_MESSAGE = (
    "The gateway has no API key yet, so it refuses every call. Create the first one with "
    "`python -m gateway.admin create --role admin --scopes all` (against the gateway's Redis), "
    "or give the gateway a bootstrap admin key in GATEWAY_BOOTSTRAP_KEY or "
    "GATEWAY_BOOTSTRAP_KEY_FILE (`python -m gateway.admin generate` makes one)."
)

# Who calls when auth is explicitly off: never an admin, never the tools.
ANONYMOUS_CALLER = Caller(
    tenant=DEFAULT_TENANT, key_id=None, role="member", scopes=frozenset(DEFAULT_MEMBER_SCOPES)
)


@dataclass
class Admission:
    """What the limits of an admitted call are charged to."""

    # The key's id, or "anon:<client address>" when auth is off.
    subject: str
    rpm_limit: int
    tpm_limit: int


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about 4 characters a token), for limits before counting."""
    return max(1, math.ceil(len(text) / 4))


def _declared_tokens(request: Request) -> int | None:
    """The body's estimated tokens from its declared size (4 bytes a token); None if chunked."""
    length = request.headers.get("content-length", "")
    return max(1, math.ceil(int(length) / 4)) if length.isdigit() else None


async def _body_tokens(request: Request) -> int:
    # The body is cached on the request; the route reads the same bytes.
    return estimate_tokens((await request.body()).decode("utf-8", "replace"))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# One round trip for a keyed call: the key's record, its scope, and the check and charge of
# its limits. KEYS[1] the record of the key's hash, KEYS[2..5] the request and token windows
# of the key id, KEYS[6] the ids hash (its length tells an empty store); ARGV[1] weight,
# ARGV[2] ttl, ARGV[3] the key id the token names, ARGV[4]/ARGV[5] default rpm/tpm,
# ARGV[6] the prompt's estimated tokens, ARGV[7] the route's scope ('' none), ARGV[8] the
# scopes of a record that has none (a first-version key, see gateway.keys).
_AUTHORIZE_SCRIPT = (
    CHECK_LIMITS_LUA
    + """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return {'unknown', redis.call('HLEN', KEYS[6])} end
local f = {}
for i = 1, #record, 2 do f[record[i]] = record[i + 1] end
if f['id'] ~= ARGV[3] then return {'unknown', redis.call('HLEN', KEYS[6])} end
if f['revoked'] == '1' then return {'revoked', record} end
local scopes = ' ' .. (f['scopes'] or ARGV[8]) .. ' '
if ARGV[7] ~= '' and not string.find(scopes, ' ' .. ARGV[7] .. ' ', 1, true) then
  return {'forbidden', record}
end
local rpm = tonumber(f['rpm_limit']) or tonumber(ARGV[4])
local tpm = tonumber(f['tpm_limit']) or tonumber(ARGV[5])
local counts = check_limits(KEYS, 2, 2, tonumber(ARGV[1]), tonumber(ARGV[2]), false,
                            {rpm, tpm}, {1, tonumber(ARGV[6])})
return {'ok', record, counts}
"""
)


def _record(flat: list[bytes | str]) -> ApiKey:
    return ApiKey.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))


def _missing_scope(caller: Caller, scope: str) -> Forbidden:
    who = f"API key {caller.key_id}" if caller.key_id else "An anonymous caller"
    return Forbidden(
        f"{who} lacks the '{scope}' scope that this route needs; an admin can create a key "
        f"with it (`python -m gateway.admin create --scopes ...`).",
        code="insufficient_scope",
    )


class Gatekeeper:
    """Who is calling, whether they may, and whether their limits allow it (one Redis script)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.store = KeyStore(redis)
        self.limiter = RateLimiter(redis)
        self._authorize = redis.register_script(_AUTHORIZE_SCRIPT)

    async def _unknown(
        self, message: str, code: str, known_keys: int | None = None
    ) -> ServiceError:
        """401 for a caller without a valid key; 503 while no key exists at all."""
        if known_keys is None:
            known_keys = await self.store.count()
        if known_keys == 0:
            return ServiceUnavailable(NO_KEYS_MESSAGE, code="no_api_keys")
        return Unauthorized(message, code=code)

    async def keyed(
        self, token: str | None, settings: GatewaySettings, scope: str | None, cost: int
    ) -> tuple[Admission, list[Decision]]:
        """Identify the key, set the caller, check its scope and check + charge its limits."""
        if token is None:
            raise await self._unknown(
                "Missing API key: send 'Authorization: Bearer <key>' "
                "(an admin creates one with `python -m gateway.admin create`).",
                "missing_api_key",
            )
        subject = key_id(token)  # names the rate-limit counters
        if subject is None:
            raise await self._unknown("Invalid API key.", "invalid_api_key")
        window = self.limiter.window()
        keys = [
            KeyStore.record_key(token),
            *window.keys("req", subject),
            *window.keys("tok", subject),
            KeyStore.ids_key(),
        ]
        args: list[str | int] = [
            f"{window.weight:.6f}",
            WINDOW_S * 2,
            subject,
            settings.rpm_limit,
            settings.tpm_limit,
            cost,
            scope or "",
            scopes_text(DEFAULT_MEMBER_SCOPES),
        ]
        status, *rest = await self._authorize(keys=keys, args=args)
        status = status.decode() if isinstance(status, bytes) else status
        if status == "unknown":
            raise await self._unknown("Invalid API key.", "invalid_api_key", int(rest[0]))
        key = _record(rest[0])
        # Set before the checks below: a refused call of a real key is still attributed to it.
        caller_var.set(key.caller())
        if status == "revoked":
            raise Forbidden(f"API key {key.id} has been revoked.", code="revoked_api_key")
        if status == "forbidden":
            raise _missing_scope(key.caller(), scope or "")
        rpm = settings.rpm_limit if key.rpm_limit is None else key.rpm_limit
        tpm = settings.tpm_limit if key.tpm_limit is None else key.tpm_limit
        allowed, *counts = rest[1]
        limits = [Limit("req", rpm, 1), Limit("tok", tpm, cost)]
        return Admission(key.id, rpm, tpm), window.decisions(
            limits, bool(allowed), counts, charge_only=False
        )

    async def anonymous(
        self, request: Request, settings: GatewaySettings, scope: str | None, cost: int
    ) -> tuple[Admission, list[Decision]]:
        """Auth explicitly off: the anonymous caller, limits per client address."""
        caller_var.set(ANONYMOUS_CALLER)
        if scope is not None and not ANONYMOUS_CALLER.allows(scope):
            raise _missing_scope(ANONYMOUS_CALLER, scope)
        host = request.client.host if request.client else "unknown"
        admission = Admission(f"anon:{host}", settings.rpm_limit, settings.tpm_limit)
        _, decisions = await self.limiter.check(
            admission.subject,
            [Limit("req", admission.rpm_limit, 1), Limit("tok", admission.tpm_limit, cost)],
        )
        return admission, decisions


def _headers(requests: Decision, tokens: Decision) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(requests.limit),
        "x-ratelimit-remaining-requests": str(requests.remaining),
        "x-ratelimit-reset-requests": f"{requests.reset_s:.0f}s",
        "x-ratelimit-limit-tokens": str(tokens.limit),
        "x-ratelimit-remaining-tokens": str(tokens.remaining),
        "x-ratelimit-reset-tokens": f"{tokens.reset_s:.0f}s",
    }


async def _admit(
    request: Request, scope: str | None, prompt_tokens: bool
) -> tuple[Admission, Decision, Decision]:
    settings: GatewaySettings = request.app.state.settings
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    declared = _declared_tokens(request) if prompt_tokens else 0
    if not settings.auth_required:
        cost = declared if declared is not None else await _body_tokens(request)
        admission, (requests, tokens) = await gatekeeper.anonymous(request, settings, scope, cost)
        return admission, requests, tokens
    admission, (requests, tokens) = await gatekeeper.keyed(
        _bearer(request), settings, scope, declared or 0
    )
    if declared is None and requests.allowed and tokens.allowed:
        # A chunked body: read only now that the key is known, then charge its tokens.
        cost = await _body_tokens(request)
        _, (tokens,) = await gatekeeper.limiter.check(
            admission.subject, [Limit("tok", admission.tpm_limit, cost)]
        )
    return admission, requests, tokens


async def _authorize(request: Request, scope: str | None, prompt_tokens: bool) -> Caller:
    try:
        admission, requests, tokens = await _admit(request, scope, prompt_tokens)
    except RedisError as exc:
        logger.warning("redis unavailable for auth", extra={"error": repr(exc)})
        raise ServiceUnavailable(
            "The gateway's key store (Redis) is unavailable.", code="redis_unavailable"
        ) from exc
    headers = _headers(requests, tokens)
    setattr(request.state, _ADMISSION_STATE, admission)
    if not requests.allowed or not tokens.allowed:
        which = "requests" if not requests.allowed else "tokens"
        blocked = requests if not requests.allowed else tokens
        wait = max(1, math.ceil(blocked.retry_after_s))
        raise RateLimited(
            f"Rate limit of {blocked.limit} {which} per minute reached; retry in {wait}s.",
            code=f"rate_limit_{which}",
            headers={**headers, "Retry-After": str(wait)},
        )
    setattr(request.state, RATELIMIT_HEADERS_STATE, headers)
    caller = caller_var.get()
    assert caller is not None  # set by the gatekeeper
    return caller


def authorize(scope: str | None, *, prompt_tokens: bool = False) -> Any:
    """The dependency every `/v1` route declares: a key with `scope` (None: any key).

    `prompt_tokens`: the body is a prompt whose estimated tokens count against
    the key's tokens per minute.
    """

    async def dependency(request: Request) -> Caller:
        return await _authorize(request, scope, prompt_tokens)

    return Depends(dependency)


async def prepare_key_store(store: KeyStore, settings: GatewaySettings) -> None:
    """On start: migrate first-version keys, register the bootstrap key, warn when auth is off.

    Raises `InvalidKeySpec` for a bootstrap key that cannot be used (the gateway does
    not start), `RedisError` while Redis is unreachable (the caller retries).
    """
    if not settings.auth_required:
        logger.warning(
            "GATEWAY_AUTH_REQUIRED=false: every /v1 call runs WITHOUT an API key as tenant "
            "'default' (role member). Development only: never expose this gateway."
        )
    migrated = await store.migrate()
    if migrated:
        logger.info(
            "migrated %d first-version API key(s) to tenant 'default', role member",
            migrated,
            extra={"migrated_keys": migrated},
        )
    try:
        bootstrap_key = settings.read_bootstrap_key()
    except OSError as exc:
        raise InvalidKeySpec(f"GATEWAY_BOOTSTRAP_KEY_FILE cannot be read: {exc}") from exc
    if bootstrap_key is not None:
        await _register_bootstrap_key(store, bootstrap_key)
    elif settings.auth_required and not await store.count():
        logger.warning(NO_KEYS_MESSAGE)


async def _register_bootstrap_key(store: KeyStore, key: str) -> None:
    ident = key_id(key)
    # `sk-gw-<id>-`, then the secret (which may itself contain '-').
    secret_chars = len(key) - len(f"{KEY_PREFIX}{ident}-") if ident else 0
    # Never echo the value: it is a credential.
    if ident is None or secret_chars < BOOTSTRAP_SECRET_MIN_CHARS:
        raise InvalidKeySpec(
            f"the bootstrap key must have the form {KEY_PREFIX}<hex id>-<secret> with a secret "
            f"of at least {BOOTSTRAP_SECRET_MIN_CHARS} characters [A-Za-z0-9_-] "
            "(`python -m gateway.admin generate` makes one)"
        )
    known = await store.lookup(key)
    if known is None:
        await store.register(key, "bootstrap", role="admin", scopes=ALL_SCOPES)
        logger.info(
            "registered the bootstrap admin key %s", ident, extra={"bootstrap_key_id": ident}
        )
    elif known.revoked:
        logger.warning("the bootstrap key %s is revoked: it stays revoked", ident)


async def charge_completion(request: Request, tokens: int) -> None:
    """Charge the answer's tokens to the caller (never refuses: the answer is out)."""
    admission: Admission | None = getattr(request.state, _ADMISSION_STATE, None)
    if admission is None or tokens <= 0:
        return
    try:
        limiter: RateLimiter = request.app.state.gatekeeper.limiter
        await limiter.hit("tok", admission.subject, admission.tpm_limit, tokens, charge_only=True)
    except RedisError as exc:
        logger.warning("could not charge tokens", extra={"error": repr(exc)})
