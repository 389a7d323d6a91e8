"""Attacks on the `python` tool of a real tools_svc process: each fails safely.

After every attack the service is still healthy (an autouse fixture checks),
and tools_svc's own environment, files and loopback stay out of reach.
Processes a snippet starts carry a unique token in their command line, so the
tests can look for survivors in the host's process table.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service

pytestmark = pytest.mark.integration

CANARY = f"canary-{uuid.uuid4().hex}"
TIMEOUT_S = 3


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_dir = tmp_path_factory.mktemp("sandbox")
    data_dir = log_dir / "tools_svc"
    data_dir.mkdir()
    (data_dir / "canary.txt").write_text(CANARY)
    server = start_service(
        "tools_svc",
        log_dir,
        env={"TOOLS_PYTHON_TIMEOUT_S": str(TIMEOUT_S), "TOOLS_SECRET_CANARY": CANARY},
    )
    ready = httpx.get(f"{server.url}/readyz").json()
    if ready["checks"]["python_sandbox"]["status"] != "up":
        server.stop()
        pytest.fail(f"the sandbox is unavailable here: {ready['checks']['python_sandbox']}")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def still_healthy(tools: RunningServer) -> Iterator[None]:
    yield
    assert tools.process.poll() is None, "tools_svc died"
    assert httpx.get(f"{tools.url}/healthz", timeout=5).status_code == 200


def run(tools: RunningServer, code: str) -> dict[str, Any]:
    response = httpx.post(
        f"{tools.url}/v1/tools/python/invoke", json={"arguments": {"code": code}}, timeout=60
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def host_processes_with(token: str) -> list[int]:
    """Pids on the host whose command line contains `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def spawn_sleeper(token: str) -> str:
    # Snippet code: start a process that sleeps a minute, named by `token`, in its own session.
    return (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    argv = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        f"    os.execv(sys.executable, argv + [{token!r}])\n"
    )


def test_the_services_environment_is_out_of_reach(tools: RunningServer) -> None:
    code = f"""
import json, os
seen = {{"environ": dict(os.environ)}}
for path in ["/proc/1/environ", "/proc/self/environ", "/proc/{tools.process.pid}/environ"]:
    try:
        seen[path] = open(path, "rb").read().decode(errors="replace")
    except OSError as e:
        seen[path] = type(e).__name__
print(json.dumps(seen))
"""
    body = run(tools, code)

    assert CANARY not in json.dumps(body)
    seen = json.loads(body["output"]["stdout"])
    assert set(seen["environ"]) == {"PATH", "HOME", "TMPDIR", "LANG"}
    # PID 1 is the jail's init (not readable); the service's pid does not exist here.
    assert seen["/proc/1/environ"] == "PermissionError"
    assert seen[f"/proc/{tools.process.pid}/environ"] in ("FileNotFoundError", "PermissionError")


def test_files_outside_the_sandbox_cannot_be_read(tools: RunningServer) -> None:
    data_dir = tools.log_path.parent / "tools_svc"
    targets = [
        str(REPO_ROOT / "tools_svc" / "settings.py"),
        str(REPO_ROOT),
        str(data_dir / "canary.txt"),
        str(data_dir),
        "/etc/shadow",
        "/home",
        "/var/log",
        "/root/.bash_history",
        "/proc/1/root/etc/passwd",
        "/proc/1/cwd",
        "/sys/class/net",
    ]
    code = f"""
import json, os
out = {{}}
for path in {targets!r}:
    try:
        out[path] = os.listdir(path) if os.path.isdir(path) else open(path).read(200)
    except OSError as e:
        out[path] = type(e).__name__
print(json.dumps({{"read": out, "root": sorted(os.listdir("/"))}}))
"""
    body = run(tools, code)

    assert CANARY not in json.dumps(body)
    seen = json.loads(body["output"]["stdout"])
    for path in targets:
        assert seen["read"][path] in ("FileNotFoundError", "PermissionError"), (path, seen)
    # All there is: the OS's libraries, the interpreter, a few /etc files, devices, work dir.
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "etc", "dev", "proc", "tmp", "work"}
    python_top = Path(os.path.realpath(os.__file__)).parts[1]
    assert set(seen["root"]) <= allowed | {python_top}


def test_writes_outside_the_work_dir_fail(tools: RunningServer) -> None:
    name = f"pwned-{uuid.uuid4().hex}"
    data_dir = tools.log_path.parent / "tools_svc"
    targets = [
        f"/{name}",
        f"/usr/{name}",
        f"/etc/{name}",
        str(REPO_ROOT / name),
        str(data_dir / name),
    ]
    code = f"""
import json, os
out = {{}}
for path in {targets!r} + ["/work/{name}", "/tmp/{name}"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        out[path] = "written"
    except OSError as e:
        out[path] = type(e).__name__
print(json.dumps(out))
"""
    body = run(tools, code)

    written = json.loads(body["output"]["stdout"])
    for path in targets:
        assert written[path] != "written", path
        assert not Path(path).exists(), path
    # Its own directory is writable, and lives only in the sandbox.
    assert written[f"/work/{name}"] == written[f"/tmp/{name}"] == "written"
    assert not Path(f"/tmp/{name}").exists()


def test_no_network_not_even_the_hosts_loopback(tools: RunningServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        code = f"""
import socket
print(socket.if_nameindex())
for host in ("127.0.0.1", "localhost"):
    try:
        socket.create_connection((host, {port}), timeout=2)
        print("CONNECTED", host)
    except OSError as e:
        print(host, type(e).__name__)
"""
        body = run(tools, code)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected

    stdout = body["output"]["stdout"]
    assert "CONNECTED" not in stdout
    assert stdout.splitlines()[0] == "[(1, 'lo')]"  # a network namespace of its own


def test_fork_bomb_hits_the_process_limit(tools: RunningServer) -> None:
    token = f"forkbomb-{uuid.uuid4().hex}"
    code = f"""
import os, sys
n = 0
try:
    while True:
        if os.fork() == 0:
            argv = [sys.executable, "-c", "import time; time.sleep(60)", {token!r}]
            os.execv(sys.executable, argv)
        n += 1
except OSError as e:
    print("refused after", n, type(e).__name__)
"""
    body = run(tools, code)

    assert body["output"]["stdout"].startswith("refused after")
    assert body["output"]["exit_code"] == 0
    # Its children ended with it.
    assert_gone(token)


def test_memory_bomb_gets_memory_error(tools: RunningServer) -> None:
    body = run(tools, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))")

    assert "MemoryError" in body["output"]["stderr"]
    assert body["output"]["exit_code"] == 1
    assert body["error"] == "exited with status 1"


def test_infinite_loop_is_killed_at_the_timeout(tools: RunningServer) -> None:
    started = time.monotonic()
    body = run(tools, "while True:\n    pass")

    assert body["output"]["timed_out"] is True
    assert body["output"]["signal"] == "SIGKILL"
    assert body["error"] == "timed out; the sandbox was killed"
    assert time.monotonic() - started < TIMEOUT_S + 10  # generous: killed, not left to run


def test_huge_output_is_cut(tools: RunningServer) -> None:
    flood = run(tools, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    long = run(tools, "print('y' * 200_000)")

    assert flood["error"] == "printed far more than the output limit; the sandbox was killed"
    assert flood["truncated"] is True
    assert len(json.dumps(flood)) < 50_000
    assert long["error"] is None and long["truncated"] is True
    assert long["output"]["stdout"].startswith("y" * 1000)
    assert "[... truncated" in long["output"]["stdout"]


def test_a_child_does_not_outlive_its_parent(tools: RunningServer) -> None:
    token = f"orphan-{uuid.uuid4().hex}"
    body = run(tools, spawn_sleeper(token) + "print('parent exits')")

    assert body["output"]["stdout"] == "parent exits\n"
    assert_gone(token)


def test_a_child_does_not_outlive_the_timeout(tools: RunningServer) -> None:
    token = f"escapee-{uuid.uuid4().hex}"
    body = run(tools, spawn_sleeper(token) + "import time\ntime.sleep(60)")

    assert body["output"]["timed_out"] is True
    assert_gone(token)


def test_killing_the_parent_fails_safely(tools: RunningServer) -> None:
    code = f"""
import os, signal
# Its parent (the jail's init, PID 1), the service and the test by their host pids,
# and -1: every process it may signal.
for target in (os.getppid(), 1, {tools.process.pid}, {os.getpid()}, -1):
    try:
        os.kill(target, signal.SIGKILL)
        print(target, "signalled")
    except OSError as e:
        print(target, type(e).__name__)
"""
    body = run(tools, code)

    lines = body["output"]["stdout"].splitlines()
    assert lines[:2] == ["1 PermissionError", "1 PermissionError"]
    # Host pids mean nothing in its PID namespace; -1 finds nobody else to signal.
    assert all(line.endswith(("ProcessLookupError", "PermissionError")) for line in lines)
    assert len(lines) == 5
    assert run(tools, "print('next run')")["output"]["stdout"] == "next run\n"


def test_runs_unprivileged(tools: RunningServer) -> None:
    code = """
import os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
print(os.getuid(), os.getgid(), status["CapEff"].strip(), status["NoNewPrivs"].strip())
try:
    os.setuid(0)
    print("became root")
except PermissionError:
    print("setuid-refused")
"""
    uid, gid, caps, no_new_privs, setuid = run(tools, code)["output"]["stdout"].split()

    assert int(uid) != 0 and int(gid) != 0
    if os.geteuid() == 0:
        assert int(uid) >= 2_000_000_000  # a sandbox uid, not the service's
    assert caps == "0000000000000000"
    assert no_new_privs == "1"
    assert setuid == "setuid-refused"


def test_ten_concurrent_runs_do_not_interfere(tools: RunningServer) -> None:
    def one(n: int) -> tuple[int, dict[str, Any]]:
        code = f"""
import json, os, time
open("mine-{n}.txt", "w").write("{n}" * 1000)
time.sleep(0.5)
text = open("mine-{n}.txt").read()
print(json.dumps({{"n": {n}, "files": sorted(os.listdir(".")), "text": text}}))
"""
        return n, run(tools, code)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))

    for n, body in results:
        assert body["error"] is None, body
        seen = json.loads(body["output"]["stdout"])
        assert seen["n"] == n
        assert seen["files"] == ["main.py", f"mine-{n}.txt"]
        assert seen["text"] == str(n) * 1000


def assert_gone(token: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while host_processes_with(token):
        assert time.monotonic() < deadline, f"processes with {token} survive"
        time.sleep(0.1)
