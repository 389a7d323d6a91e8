"""Secrets the platform makes for itself: the local Redis password, compose's secret files.

`python -m launcher.secrets [DIR]` (what `make secrets` runs) writes the files
docker-compose.yml and the Kubernetes Secret read (docs/deployment.md), fresh and
random, into DIR (default `secrets/`): `redis_password`, `gateway_bootstrap_key`
and `gateway_image_url_secret` (the key that signs image URLs, shared by every
gateway replica). Existing files are kept.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["COMPOSE_SECRETS", "ensure_secret", "local_redis_password"]


def _new_redis_password() -> str:
    return secrets.token_urlsafe(32)


def _new_gateway_key() -> str:
    from gateway.keys import new_key

    return new_key()


def _new_image_url_secret() -> str:
    return secrets.token_urlsafe(48)


# The compose secret files and how each is made.
COMPOSE_SECRETS: dict[str, Callable[[], str]] = {
    "redis_password": _new_redis_password,
    "gateway_bootstrap_key": _new_gateway_key,
    "gateway_image_url_secret": _new_image_url_secret,
}


def ensure_secret(path: Path, make: Callable[[], str], mode: int = 0o600) -> str:
    """The secret in `path`, created with `make()` the first time; the file gets `mode`.

    Its directory is made private (0700); the file is written whole under
    that mode from the start, so it is never readable by others, even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
        tmp.replace(path)
    path.chmod(mode)
    value = path.read_text().strip()
    if not value:
        raise SystemExit(f"{path} is empty: delete it to have a new secret made")
    return value


def local_redis_password(var_dir: Path) -> str:
    """The password of `make up`'s Redis, made on the first start (var/secrets, mode 0600)."""
    return ensure_secret(var_dir / "secrets" / "redis_password", _new_redis_password)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.secrets", description=__doc__)
    parser.add_argument("directory", nargs="?", default="secrets", type=Path)
    args = parser.parse_args(argv)
    for name, make in COMPOSE_SECRETS.items():
        path = args.directory / name
        existed = path.exists()
        # 0644 inside a 0700 directory: compose bind-mounts a file secret with the host
        # file's mode, and the containers run as uid 10001, not as the file's owner.
        ensure_secret(path, make, mode=0o644)
        print(f"{path}: {'kept' if existed else 'created'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
