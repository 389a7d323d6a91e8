"""One memory_svc stack per test module: a real Redis, the fake upstreams, memory_svc.

A module says which upstreams memory_svc reaches through the fakes with
`MEMORY_UPSTREAMS` (a tuple of "rag_svc"/"moe_svc"; none by default); the fakes
start only when some module asks for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import RunningRedis, RunningServer, start_redis
from tests.integration.memory.harness import start_fakes, start_memory


@pytest.fixture(scope="module")
def log_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def redis(log_dir: Path) -> Iterator[RunningRedis]:
    server = start_redis(log_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fakes(log_dir: Path) -> Iterator[RunningServer]:
    server = start_fakes(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def memory(
    request: pytest.FixtureRequest, log_dir: Path, redis: RunningRedis
) -> Iterator[RunningServer]:
    upstreams: tuple[str, ...] = getattr(request.module, "MEMORY_UPSTREAMS", ())
    fake_url: str | None = request.getfixturevalue("fakes").url if upstreams else None
    server = start_memory(
        log_dir,
        redis.url,
        rag_url=fake_url if "rag_svc" in upstreams else None,
        moe_url=fake_url if "moe_svc" in upstreams else None,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alone(log_dir: Path, redis: RunningRedis) -> Iterator[RunningServer]:
    """The same service with neither moe_svc nor rag_svc reachable."""
    server = start_memory(log_dir / "alone", redis.url)
    yield server
    server.stop()
