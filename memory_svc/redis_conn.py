"""The Redis connection of memory_svc and what a Redis outage looks like to callers.

Every command has `redis_timeout_s` to answer. A command that fails on a
broken connection is retried once on a fresh one, which is what makes the
service recover by itself after Redis restarts (pooled connections are dead
then); timeouts are not retried, so a hung Redis costs one timeout, not
several. Appends carry their message ids, so a retried append cannot store a
message twice. Whatever still fails becomes a 503 in the shared error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import ServiceUnavailable, error_response
from common.request_context import current_request_id

__all__ = ["connect_redis", "decode", "decode_map", "install_redis_error_handler"]

logger = logging.getLogger("memory_svc.redis")


def decode(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes: the client does not decode them)."""
    return value.decode() if isinstance(value, bytes) else value


def decode_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply (HGETALL) as text."""
    return {decode(k): decode(v) for k, v in raw.items()}


def connect_redis(url: str, timeout_s: float) -> aioredis.Redis:
    """A client (with its pool) whose commands fail within about `timeout_s`."""
    return aioredis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1, (RedisConnectionError,)),
        # Replies stay bytes: vectors are binary; text is decoded where it is read.
        decode_responses=False,
    )


def install_redis_error_handler(app: FastAPI, service: str) -> None:
    """Answer 503 (`redis_unavailable`) when Redis is down, slow or still loading."""

    async def on_redis_down(request: Request, exc: Exception) -> JSONResponse:
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        logger.warning("redis unavailable", extra={"error": reason})
        error = ServiceUnavailable(
            f"Redis is unavailable ({reason}); retry shortly.",
            code="redis_unavailable",
            headers={"Retry-After": "1"},
        )
        detail = error.detail(service, current_request_id())
        return error_response(detail, error.status_code, error.headers)

    # BusyLoadingError (Redis replaying its AOF) is a ConnectionError too.
    app.add_exception_handler(RedisConnectionError, on_redis_down)
    app.add_exception_handler(RedisTimeoutError, on_redis_down)
