"""Who may call the gateway and how much: API keys, scopes and per-key rate limits.

Every `/v1` route names its scope with `gateway.deps.authorize(scope)`, a route
dependency that runs `admit_caller` before the body is read. One Redis script
(`gateway.gatekeeper`) finds the caller's key, checks its scope and checks and
charges one request and the prompt's estimated tokens (from `Content-Length`)
against the key's limits:

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

from fastapi import Request
from redis.exceptions import RedisError

from common.caller import ALL_SCOPES, Caller, caller_var
from common.errors import RateLimited, ServiceUnavailable
from gateway.gatekeeper import NO_KEYS_MESSAGE, Admission, Gatekeeper
from gateway.keys import BOOTSTRAP_SECRET_MIN_CHARS, KEY_PREFIX, InvalidKeySpec, KeyStore, key_id
from gateway.ratelimit import Decision, Limit, RateLimiter
from gateway.settings import GatewaySettings

__all__ = [
    "admit_caller",
    "charge_completion",
    "estimate_tokens",
    "prepare_key_store",
]

logger = logging.getLogger("gateway.security")

RATELIMIT_HEADERS_STATE = "ratelimit_headers"
_ADMISSION_STATE = "admission"


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
    request: Request,
    settings: GatewaySettings,
    gatekeeper: Gatekeeper,
    scope: str | None,
    prompt_tokens: bool,
) -> tuple[Admission, Decision, Decision]:
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


async def admit_caller(
    request: Request,
    settings: GatewaySettings,
    gatekeeper: Gatekeeper,
    scope: str | None,
    prompt_tokens: bool,
) -> Caller:
    """Admit the call or raise: its key, `scope` (None: any key) and limits (see above).

    `prompt_tokens`: the body is a prompt whose estimated tokens count against
    the key's tokens per minute. The body is read only when it is chunked.
    """
    try:
        admission, requests, tokens = await _admit(
            request, settings, gatekeeper, scope, prompt_tokens
        )
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


async def charge_completion(limiter: RateLimiter, request: Request, tokens: int) -> None:
    """Charge the answer's tokens to the caller (never refuses: the answer is out)."""
    admission: Admission | None = getattr(request.state, _ADMISSION_STATE, None)
    if admission is None or tokens <= 0:
        return
    try:
        await limiter.hit("tok", admission.subject, admission.tpm_limit, tokens, charge_only=True)
    except RedisError as exc:
        logger.warning("could not charge tokens", extra={"error": repr(exc)})
