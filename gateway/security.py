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
from redis.exceptions import RedisError

from common.errors import Forbidden, RateLimited, ServiceUnavailable, Unauthorized
from gateway.keys import ApiKey, KeyStore
from gateway.ratelimit import Decision, Limit, RateLimiter
from gateway.settings import GatewaySettings

__all__ = ["Caller", "authorize", "charge_completion", "estimate_tokens"]

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


async def _identify(request: Request) -> Caller:
    settings: GatewaySettings = request.app.state.settings
    store = KeyStore(request.app.state.redis)
    token = _bearer(request)
    if not await _auth_required(request, store):
        host = request.client.host if request.client else "unknown"
        return Caller(f"anon:{host}", None, settings.rpm_limit, settings.tpm_limit)
    if token is None:
        raise Unauthorized(
            "Missing API key: send 'Authorization: Bearer <key>' "
            "(create one with `python -m gateway.admin create`).",
            code="missing_api_key",
        )
    key = await store.lookup(token)
    if key is None:
        raise Unauthorized("Invalid API key.", code="invalid_api_key")
    if key.revoked:
        raise Forbidden(f"API key {key.id} has been revoked.", code="revoked_api_key")
    rpm = settings.rpm_limit if key.rpm_limit is None else key.rpm_limit
    tpm = settings.tpm_limit if key.tpm_limit is None else key.tpm_limit
    return Caller(key.id, key, rpm, tpm)


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
    try:
        caller = await _identify(request)
        limiter = RateLimiter(request.app.state.redis)
        cost = await _prompt_tokens(request)
        _, (requests, tokens) = await limiter.check(
            caller.subject,
            [Limit("req", caller.rpm_limit, 1), Limit("tok", caller.tpm_limit, cost)],
        )
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
        limiter = RateLimiter(request.app.state.redis)
        await limiter.hit("tok", caller.subject, caller.tpm_limit, tokens, charge_only=True)
    except RedisError as exc:
        logger.warning("could not charge tokens", extra={"error": repr(exc)})
