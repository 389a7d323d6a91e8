"""A caller that leaves stops its tool run: the sandbox's processes end with the request."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import RunningServer, start_service
from tests.integration.test_tools_sandbox import host_processes_with

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root: Path = tmp_path_factory.mktemp("tools_cancel")
    # A sandbox timeout far longer than the test waits: only the cancellation can end the run.
    server = start_service("tools_svc", root, env={"TOOLS_PYTHON_TIMEOUT_S": "60"})
    yield server
    server.stop()


def test_a_run_whose_caller_left_is_killed(tools: RunningServer) -> None:
    token = f"sleeper-{uuid.uuid4().hex}"
    # The snippet becomes a process named by `token` that would sleep for a minute.
    code = (
        "import os, sys\n"
        "sleep = 'import time; time.sleep(60)'\n"
        f"os.execv(sys.executable, [sys.executable, '-c', sleep, {token!r}])\n"
    )
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{tools.url}/v1/tools/python/invoke", json={"arguments": {"code": code}}, timeout=3
        )
    deadline = time.monotonic() + 5
    while host_processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = host_processes_with(token)
    for pid in survivors:
        os.kill(pid, 9)
    assert survivors == [], "the sandbox run outlived its caller"
    assert httpx.get(f"{tools.url}/healthz", timeout=5).status_code == 200
