"""Secret files: made once, private from the start, kept afterwards."""

from __future__ import annotations

import stat
from pathlib import Path

from launcher.redis_server import DISABLED_COMMANDS, redis_argv
from launcher.secrets import ensure_secret, local_redis_password, main


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_local_redis_password_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = local_redis_password(tmp_path)
    assert len(first) >= 32
    assert mode(tmp_path / "secrets" / "redis_password") == 0o600
    assert mode(tmp_path / "secrets") == 0o700
    assert local_redis_password(tmp_path) == first


def test_a_loosened_secret_file_is_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "s" / "token"
    ensure_secret(path, lambda: "abc")
    path.chmod(0o666)
    assert ensure_secret(path, lambda: "other") == "abc"
    assert mode(path) == 0o600


def test_make_secrets_writes_every_compose_secret(tmp_path: Path) -> None:
    assert main([str(tmp_path / "secrets")]) == 0
    password = (tmp_path / "secrets" / "redis_password").read_text().strip()
    key = (tmp_path / "secrets" / "gateway_bootstrap_key").read_text().strip()
    image_key = (tmp_path / "secrets" / "gateway_image_url_secret").read_text().strip()
    assert len(password) >= 32
    assert key.startswith("sk-gw-")
    # The gateway refuses an image URL key shorter than 32 characters.
    assert len(image_key) >= 32 and image_key not in (password, key)
    assert mode(tmp_path / "secrets") == 0o700
    main([str(tmp_path / "secrets")])
    assert (tmp_path / "secrets" / "redis_password").read_text().strip() == password


def test_redis_command_line_disables_commands_and_carries_no_password(tmp_path: Path) -> None:
    argv = redis_argv("0.0.0.0", 7000, tmp_path, config_file=tmp_path / "auth.conf")
    assert argv[1] == str(tmp_path / "auth.conf")
    assert argv[argv.index("--bind") + 1] == "127.0.0.1"
    for command in ("CONFIG", "FLUSHALL", "DEBUG", "MODULE", "SHUTDOWN"):
        assert command in DISABLED_COMMANDS
        at = argv.index(command)
        assert argv[at - 1 : at + 2] == ["--rename-command", command, ""]
    assert "requirepass" not in " ".join(argv)
