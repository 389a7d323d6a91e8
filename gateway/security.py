"""Who may call the gateway and how much: API keys and per-key rate limits.

`authorize` runs before every `/v1` route (a router dependency): it finds the
caller's key (401 when missing or unknown, 403 when revoked), then charges
one request and the prompt's estimated tokens against the key's limits (429
with `Retry-After`). The `x-ratelimit-*` headers go on the answer through
the request's state (see `gateway.edge`). Tokens of the answer are charged
afterwards with `charge_completion`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.errors import Forbidden, RateLimited, ServiceUnavailable, Unauthorized
from gateway.keys import ApiKey, KeyStore, key_id
from gateway.ratelimit import CHECK_LIMITS_LUA, WINDOW_S, Decision, Limit, RateLimiter
from gateway.settings import GatewaySettings

__all__ = ["Caller", "Gatekeeper", "authorize", "charge_completion", "estimate_tokens"]

logger = logging.getLogger("gateway.security")

RATELIMIT_HEADERS_STATE = "ratelimit_headers"
_KEYS_SEEN_TTL_S = 30.0


@dataclass
class Caller:
    # The key's id, or "anon:<client address>" when auth is off.
    subject: str
    key: ApiKey | None
    rpm_limit: int
    tpm_limit: int


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about 4 characters a token), for limits before counting."""
    return max(1, math.ceil(len(text) / 4))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _auth_required(request: Request, store: KeyStore) -> bool:
    settings: GatewaySettings = request.app.state.settings
    if settings.auth_required is not None:
        return settings.auth_required
    # Once a key exists auth stays on (keys are revoked, never deleted): remember
    # that for a while instead of asking Redis on every request.
    state = request.app.state
    if getattr(state, "keys_seen_at", -math.inf) > time.monotonic() - _KEYS_SEEN_TTL_S:
        return True
    if await store.any_keys():
        state.keys_seen_at = time.monotonic()
        return True
    return False


# One round trip for a keyed call: the key's record, its state, and the check and charge
# of its limits. KEYS[1] the record of the key's hash, KEYS[2..5] the request and token
# windows of the key id; ARGV[1] weight, ARGV[2] ttl, ARGV[3] the key id the token names,
# ARGV[4]/ARGV[5] default rpm/tpm, ARGV[6] the prompt's estimated tokens.
_AUTHORIZE_SCRIPT = (
    CHECK_LIMITS_LUA
    + """
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then return {'unknown'} end
local f = {}
for i = 1, #record, 2 do f[record[i]] = record[i + 1] end
if f['id'] ~= ARGV[3] then return {'unknown'} end
if f['revoked'] == '1' then return {'revoked', record} end
local rpm = tonumber(f['rpm_limit']) or tonumber(ARGV[4])
local tpm = tonumber(f['tpm_limit']) or tonumber(ARGV[5])
local counts = check_limits(KEYS, 2, 2, tonumber(ARGV[1]), tonumber(ARGV[2]), false,
                            {rpm, tpm}, {1, tonumber(ARGV[6])})
return {'ok', record, counts}
"""
)


def _record(flat: list[bytes | str]) -> ApiKey:
    return ApiKey.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))


class Gatekeeper:
    """Who is calling and whether their limits allow it, per request (one Redis script)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.store = KeyStore(redis)
        self.limiter = RateLimiter(redis)
        self._authorize = redis.register_script(_AUTHORIZE_SCRIPT)

    async def keyed(
        self, token: str | None, settings: GatewaySettings, cost: int
    ) -> tuple[Caller, list[Decision]]:
        """Identify the key and check + charge its limits; 401/403 for bad keys."""
        if token is None:
            raise Unauthorized(
                "Missing API key: send 'Authorization: Bearer <key>' "
                "(create one with `python -m gateway.admin create`).",
                code="missing_api_key",
            )
        subject = key_id(token)  # names the rate-limit counters
        if subject is None:
            raise Unauthorized("Invalid API key.", code="invalid_api_key")
        window = self.limiter.window()
        keys = [
            KeyStore.record_key(token),
            *window.keys("req", subject),
            *window.keys("tok", subject),
        ]
        args: list[str | int] = [
            f"{window.weight:.6f}",
            WINDOW_S * 2,
            subject,
            settings.rpm_limit,
            settings.tpm_limit,
            cost,
        ]
        status, *rest = await self._authorize(keys=keys, args=args)
        status = status.decode() if isinstance(status, bytes) else status
        if status == "unknown":
            raise Unauthorized("Invalid API key.", code="invalid_api_key")
        key = _record(rest[0])
        if status == "revoked":
            raise Forbidden(f"API key {key.id} has been revoked.", code="revoked_api_key")
        rpm = settings.rpm_limit if key.rpm_limit is None else key.rpm_limit
        tpm = settings.tpm_limit if key.tpm_limit is None else key.tpm_limit
        allowed, *counts = rest[1]
        limits = [Limit("req", rpm, 1), Limit("tok", tpm, cost)]
        return Caller(key.id, key, rpm, tpm), window.decisions(
            limits, bool(allowed), counts, charge_only=False
        )

    async def anonymous(
        self, request: Request, settings: GatewaySettings, cost: int
    ) -> tuple[Caller, list[Decision]]:
        """Auth off: limits per client address."""
        host = request.client.host if request.client else "unknown"
        caller = Caller(f"anon:{host}", None, settings.rpm_limit, settings.tpm_limit)
        _, decisions = await self.limiter.check(
            caller.subject,
            [Limit("req", caller.rpm_limit, 1), Limit("tok", caller.tpm_limit, cost)],
        )
        return caller, decisions


def _headers(requests: Decision, tokens: Decision) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(requests.limit),
        "x-ratelimit-remaining-requests": str(requests.remaining),
        "x-ratelimit-reset-requests": f"{requests.reset_s:.0f}s",
        "x-ratelimit-limit-tokens": str(tokens.limit),
        "x-ratelimit-remaining-tokens": str(tokens.remaining),
        "x-ratelimit-reset-tokens": f"{tokens.reset_s:.0f}s",
    }


async def _prompt_tokens(request: Request) -> int:
    if request.method != "POST" or not request.url.path.endswith(("/completions", "/embeddings")):
        return 0
    # The body is cached on the request; the route reads the same bytes.
    body = await request.body()
    return estimate_tokens(body.decode("utf-8", "replace"))


async def authorize(request: Request) -> Caller:
    """The dependency of every `/v1` route: authenticate, then rate-limit."""
    settings: GatewaySettings = request.app.state.settings
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    try:
        cost = await _prompt_tokens(request)
        if await _auth_required(request, gatekeeper.store):
            caller, (requests, tokens) = await gatekeeper.keyed(_bearer(request), settings, cost)
        else:
            caller, (requests, tokens) = await gatekeeper.anonymous(request, settings, cost)
    except RedisError as exc:
        logger.warning("redis unavailable for auth", extra={"error": repr(exc)})
        raise ServiceUnavailable(
            "The gateway's key store (Redis) is unavailable.", code="redis_unavailable"
        ) from exc
    headers = _headers(requests, tokens)
    request.state.caller = caller
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
    return caller


async def charge_completion(request: Request, tokens: int) -> None:
    """Charge the answer's tokens to the caller (never refuses: the answer is out)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None or tokens <= 0:
        return
    try:
        limiter: RateLimiter = request.app.state.gatekeeper.limiter
        await limiter.hit("tok", caller.subject, caller.tpm_limit, tokens, charge_only=True)
    except RedisError as exc:
        logger.warning("could not charge tokens", extra={"error": repr(exc)})
