"""Per-key rate limits in Redis: requests and tokens per minute.

A sliding-window counter (the estimate Cloudflare and LiteLLM use): the
count of the current fixed window plus the previous window's count weighted
by how much of it still overlaps the sliding minute. One Lua script checks
every limit of a call and charges them all or none, atomically, so replicas
of the gateway share the limits and a refused call costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["CHECK_LIMITS_LUA", "Decision", "Limit", "RateLimiter", "Window"]

WINDOW_S = 60

# The check as a Lua function, shared by the plain limiter script and the gateway's
# one-round-trip key lookup + limit check (`AUTHORIZE_SCRIPT`). For limit i of n:
# keys[first + 2i - 2] its current window, keys[first + 2i - 1] its previous window;
# limits[i], costs[i]. Returns {allowed, cur_1, prev_1, ...}.
CHECK_LIMITS_LUA = """
local function check_limits(keys, first, n, weight, ttl, charge_only, limits, costs)
  local counts = {}
  local allowed = 1
  for i = 1, n do
    local cur = tonumber(redis.call('GET', keys[first + 2 * i - 2]) or '0')
    local prev = tonumber(redis.call('GET', keys[first + 2 * i - 1]) or '0')
    if not charge_only and limits[i] > 0 and prev * weight + cur + costs[i] > limits[i] then
      allowed = 0
    end
    counts[2 * i - 1] = cur
    counts[2 * i] = prev
  end
  if allowed == 1 then
    for i = 1, n do
      if costs[i] > 0 then
        redis.call('INCRBY', keys[first + 2 * i - 2], costs[i])
        redis.call('EXPIRE', keys[first + 2 * i - 2], ttl)
        counts[2 * i - 1] = counts[2 * i - 1] + costs[i]
      end
    end
  end
  table.insert(counts, 1, allowed)
  return counts
end
"""

# KEYS: the windows of each limit (see above); ARGV[1] weight of the previous windows,
# ARGV[2] ttl, ARGV[3] charge_only, then ARGV[2+2i] limit and ARGV[3+2i] cost.
_SCRIPT = (
    CHECK_LIMITS_LUA
    + """
local n = #KEYS / 2
local limits, costs = {}, {}
for i = 1, n do
  limits[i] = tonumber(ARGV[2 + 2 * i])
  costs[i] = tonumber(ARGV[3 + 2 * i])
end
return check_limits(KEYS, 1, n, tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1',
                    limits, costs)
"""
)


@dataclass(frozen=True)
class Limit:
    kind: str  # "req", "tok"
    limit: int  # per minute; 0: unlimited
    cost: int


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until the sliding window has room for the cost (0 when it has now).
    retry_after_s: float
    reset_s: float


@dataclass(frozen=True)
class Window:
    """The sliding minute at one instant: its Redis keys and how to read their counts."""

    now: float

    @property
    def index(self) -> int:
        return int(self.now // WINDOW_S)

    @property
    def into(self) -> float:
        return self.now - self.index * WINDOW_S

    @property
    def weight(self) -> float:
        """Share of the previous fixed window that the sliding minute still covers."""
        return 1.0 - self.into / WINDOW_S

    def keys(self, kind: str, subject: str) -> list[str]:
        """[current window, previous window] counters of one limit."""
        base = f"gateway:rl:{kind}:{subject}:"
        return [base + str(self.index), base + str(self.index - 1)]

    def decisions(
        self, limits: Sequence[Limit], allowed: bool, counts: Sequence[int], charge_only: bool
    ) -> list[Decision]:
        """Decisions from the script's counts (cur_1, prev_1, cur_2, ...)."""
        decisions = []
        for i, item in enumerate(limits):
            cur, prev = int(counts[2 * i]), int(counts[2 * i + 1])
            used = prev * self.weight + cur
            fits = (
                item.limit <= 0 or charge_only or used + (0 if allowed else item.cost) <= item.limit
            )
            remaining = max(0, math.floor(item.limit - used)) if item.limit > 0 else 0
            wait = 0.0 if fits else _seconds_until_room(item.limit, item.cost, cur, prev, self.into)
            decisions.append(Decision(fits, item.limit, remaining, wait, WINDOW_S - self.into))
        return decisions


class RateLimiter:
    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.clock = clock
        self._script = redis.register_script(_SCRIPT)

    async def check(
        self, subject: str, limits: Sequence[Limit], *, charge_only: bool = False
    ) -> tuple[bool, list[Decision]]:
        """Check every limit of `subject`; charge all costs when all allow.

        `charge_only` charges without refusing (tokens of an answer already given).
        """
        window = self.window()
        keys: list[str] = []
        args: list[str | int] = [f"{window.weight:.6f}", WINDOW_S * 2, "1" if charge_only else "0"]
        for item in limits:
            keys += window.keys(item.kind, subject)
            args += [item.limit, item.cost]
        allowed, *counts = await self._script(keys=keys, args=args)
        return bool(allowed), window.decisions(limits, bool(allowed), counts, charge_only)

    def window(self) -> Window:
        return Window(self.clock())

    async def hit(
        self, kind: str, subject: str, limit: int, cost: int, *, charge_only: bool = False
    ) -> Decision:
        """One limit: `check` with a single `Limit`."""
        _, (decision,) = await self.check(
            subject, [Limit(kind, limit, cost)], charge_only=charge_only
        )
        return decision


def _seconds_until_room(limit: int, cost: int, cur: int, prev: int, into: float) -> float:
    """When `cost` more fits under `limit`, as the previous windows' shares decay."""
    if cost > limit:
        return float(WINDOW_S)
    # Still in this window: prev * (1 - (into + t) / W) + cur + cost <= limit.
    room = limit - cur - cost
    if room >= 0 and prev > 0:
        wait = WINDOW_S * (1 - room / prev) - into
    else:
        # Next window: this one becomes the previous one and decays in turn.
        wait = (WINDOW_S - into) + WINDOW_S * max(0.0, 1 - (limit - cost) / max(cur, 1))
    return float(min(WINDOW_S * 2, max(1, math.ceil(wait))))
