"""Fixtures that start real servers for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import RunningServer, free_port, start_module


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningServer]]:
    """Three real chain services a -> b -> c, returned as [a, b, c]."""
    log_dir: Path = tmp_path_factory.mktemp("chain")
    servers: list[RunningServer] = []
    next_url: str | None = None
    try:
        for name in ("c", "b", "a"):
            port = free_port()
            env = {"CHAIN_NAME": name, "CHAIN_PORT": str(port), "CHAIN_LOG_JSON": "true"}
            if next_url:
                env["CHAIN_NEXT_URL"] = next_url
            server = start_module(
                "tests.integration.chain_app", name=name, port=port, env=env, log_dir=log_dir
            )
            servers.insert(0, server)
            next_url = server.url
        yield servers
    finally:
        for server in servers:
            server.stop()
