"""`python -m launcher` (what `make up` runs): the whole platform as local processes."""

from __future__ import annotations

import asyncio
import json
import sys

from launcher.config import LaunchConfig
from launcher.platform import Platform, acquire_lock, busy_ports, install_stop_signals


def _already_running(config: LaunchConfig) -> int:
    state_path = config.var_dir / "run" / "launcher.json"
    try:
        state = json.loads(state_path.read_text())
        where = f" (launcher pid {state['pid']}); gateway at {state['gateway_url']}"
    except (OSError, ValueError, KeyError):
        where = ""
    print(
        f"The platform is already running from {config.var_dir}{where}.\n"
        "Stop it with Ctrl-C in its terminal (or SIGTERM to the launcher) before starting "
        "another, or start a second one with another PLATFORM_VAR_DIR and PLATFORM_PORT_BASE."
    )
    return 0


async def _main(config: LaunchConfig) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    return await Platform(config).run(stop)


def main() -> int:
    config = LaunchConfig.from_env()
    lock = acquire_lock(config.var_dir / "run")
    if lock is None:
        return _already_running(config)
    ports = dict(config.ports)
    if not config.external_redis_url:
        ports["redis"] = config.redis_port
    busy = busy_ports(config.host, ports)
    if busy:
        taken = ", ".join(f"{name} {port}" for name, port in busy.items())
        print(
            f"Cannot start: these ports are already in use on {config.host}: {taken}.\n"
            "Stop what uses them, or pick other ports: PLATFORM_PORT_BASE=9000 (all at once), "
            "<SERVICE>_PORT (one service, e.g. RAG_PORT) or REDIS_PORT.",
            file=sys.stderr,
        )
        return 1
    try:
        return asyncio.run(_main(config))
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
