"""Who is calling and whether they may: API keys, scopes and limits in one Redis round trip.

`Gatekeeper.keyed` runs one Redis script that finds the caller's key, checks
its scope and checks and charges one request and the prompt's estimated
tokens against the key's limits; `Gatekeeper.anonymous` serves a gateway
whose auth is explicitly off. Both set the verified `Caller` in `caller_var`.
How the answers map to HTTP errors is in `gateway.security`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from redis.asyncio import Redis

from common.caller import DEFAULT_MEMBER_SCOPES, DEFAULT_TENANT, Caller, caller_var
from common.errors import Forbidden, ServiceError, ServiceUnavailable, Unauthorized
from gateway.keys import ApiKey, KeyStore, key_id, scopes_text
from gateway.ratelimit import CHECK_LIMITS_LUA, WINDOW_S, Decision, Limit, RateLimiter
from gateway.settings import GatewaySettings

__all__ = ["ANONYMOUS_CALLER", "NO_KEYS_MESSAGE", "Admission", "Gatekeeper"]

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
