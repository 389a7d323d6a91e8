"""The launcher's Redis, started as `make up` starts it: password, disabled commands, private files.

Runs in a temp var dir on a free port: the password file is made, the server
refuses clients without it, refuses CONFIG and the other disabled commands
even with it, still runs the platform's Lua scripts, and writes its AOF
readable by its owner only.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from launcher.config import LaunchConfig
from launcher.redis_server import DISABLED_COMMANDS, REDIS_UMASK, LocalRedis, local_redis
from tests.helpers.servers import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module")
def server(var_dir: Path) -> Iterator[tuple[LocalRedis, int]]:
    port = free_port()
    # An AOF an older, unhardened start left world-readable.
    (var_dir / "redis").mkdir()
    (var_dir / "redis" / "dump.rdb").write_bytes(b"")
    (var_dir / "redis" / "dump.rdb").chmod(0o644)
    local = local_redis(var_dir, "127.0.0.1", port)
    process = subprocess.Popen(
        local.argv,
        stdout=(var_dir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        umask=REDIS_UMASK,
        start_new_session=True,
    )
    client = redis.Redis(port=port, password=local.password)
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                break
        assert process.poll() is None, (var_dir / "redis.log").read_text()
        assert time.monotonic() < deadline, "redis did not start"
        time.sleep(0.05)
    yield local, port
    process.terminate()
    process.wait(10)


def test_the_password_file_is_private_and_reused(
    var_dir: Path, server: tuple[LocalRedis, int]
) -> None:
    local, _ = server
    secret = var_dir / "secrets" / "redis_password"
    assert mode(secret) == 0o600
    assert mode(secret.parent) == 0o700
    assert secret.read_text().strip() == local.password
    assert len(local.password) >= 32
    # Nothing in the command line shows it.
    assert not any(local.password in arg for arg in local.argv)
    assert mode(var_dir / "redis" / "auth.conf") == 0o600


def test_a_client_without_the_password_is_refused(server: tuple[LocalRedis, int]) -> None:
    _, port = server
    anonymous = redis.Redis(port=port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("k", "v")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong").ping()


@pytest.mark.parametrize(
    "command", [("CONFIG", "GET", "dir"), ("FLUSHALL",), ("DEBUG", "SLEEP", "0")]
)
def test_dangerous_commands_are_refused_even_with_the_password(
    server: tuple[LocalRedis, int], command: tuple[str, ...]
) -> None:
    local, port = server
    client = redis.Redis(port=port, password=local.password)
    assert command[0] in DISABLED_COMMANDS
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command(*command)  # type: ignore[no-untyped-call]


def test_the_platform_commands_still_work(server: tuple[LocalRedis, int]) -> None:
    local, port = server
    client = redis.Redis(port=port, password=local.password)
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert script(keys=["counter"], args=[2]) == 2
    assert client.set("k", "v") and client.get("k") == b"v"


def test_data_files_are_readable_by_their_owner_only(
    var_dir: Path, server: tuple[LocalRedis, int]
) -> None:
    local, port = server
    redis.Redis(port=port, password=local.password).set("conversation", "a secret")
    data = var_dir / "redis"
    assert mode(data) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    aof = [p for p in files if ".aof" in p.name]
    assert aof, f"no AOF in {files}"
    for path in files:
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    for path in (p for p in data.rglob("*") if p.is_dir()):
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"


def test_services_get_the_password_in_their_redis_url(server: tuple[LocalRedis, int]) -> None:
    local, port = server
    config = LaunchConfig.from_env({"REDIS_PORT": str(port)})
    config.redis_password = local.password
    url = config.service_env("memory_svc")["REDIS_URL"]
    assert redis.Redis.from_url(url).ping()


def test_the_admin_cli_finds_the_local_password(
    var_dir: Path, server: tuple[LocalRedis, int]
) -> None:
    # An operator next to `make up`: no password in any setting, the generated one is used.
    _, port = server
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(var_dir),
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
    }
    command = [sys.executable, "-m", "gateway.admin", "create", "--tenant", "acme", "--json"]
    made = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["tenant"] == "acme"
    # A wrong password is a sentence saying what to set, not a traceback.
    env["GATEWAY_REDIS_URL"] = f"redis://:wrong@127.0.0.1:{port}/0"
    refused = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "GATEWAY_REDIS_URL" in refused.stderr and "Traceback" not in refused.stderr
