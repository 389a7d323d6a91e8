"""Start the gateway in front of `gateway_fakes` (every upstream) and a real Redis.

`gateway_stack` runs the gateway with `GATEWAY_AUTH_REQUIRED=false` (calls without a key
run as tenant default, role member) unless `env` says otherwise: the tests of keys and
auth pass `"GATEWAY_AUTH_REQUIRED": "true"`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.servers import (
    REPO_ROOT,
    RunningRedis,
    RunningServer,
    start_fake,
    start_redis,
    start_service,
)

UPSTREAMS = ("router_svc", "memory_svc", "rag_svc", "creative_svc", "moe_svc")


@contextmanager
def gateway_stack(
    log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[RunningServer, RunningServer, RunningRedis]]:
    """(gateway, fake upstreams, redis), stopped on exit."""
    redis = start_redis(log_dir / "redis")
    fake = start_fake("tests.helpers.gateway_fakes", log_dir, name="gateway_fakes")
    gateway = None
    try:
        gateway = start_gateway(log_dir, redis, fake, env)
        yield gateway, fake, redis
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        redis.stop()


def start_gateway(
    log_dir: Path, redis: RunningRedis, fake: RunningServer, env: Mapping[str, str] | None = None
) -> RunningServer:
    """One more gateway on `redis`, every upstream the fake (auth off unless `env` says)."""
    return start_service(
        "gateway",
        log_dir,
        upstreams={name: fake.url for name in UPSTREAMS},
        env={
            "GATEWAY_REDIS_URL": redis.url,
            "GATEWAY_LOG_JSON": "false",
            "GATEWAY_AUTH_REQUIRED": "false",
            **(env or {}),
        },
    )


def admin(redis: RunningRedis, *args: str) -> str:
    """Run `python -m gateway.admin` against `redis`; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--redis-url", redis.url, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()
