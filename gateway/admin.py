"""`python -m gateway.admin create|revoke|list|local|generate`: manage the gateway's API keys.

Keys live in the gateway's Redis (`GATEWAY_REDIS_URL`, or `--redis-url`).
Next to a platform that `make up` runs, nothing needs setting: when the URL
names no password and `REDIS_PASSWORD_FILE` is unset, the password `make up`
generated (`var/secrets/redis_password`) is used. `create` prints the new
key once: only its hash is stored. A key belongs to a tenant (default
`default`), has a role (`member` by default, or `admin`) and scopes
(default: every scope but `tools:python` and `tools:http`, which an admin
grants by name; `--scopes all` grants every one).

`local` is what `make up` runs: it keeps one admin key of tenant `default`
with every scope for the local user in a file (mode 0600, under the data
dir), creating it when the file is missing, its key was revoked, or the key
is not such an admin (a first-version key: that one is then revoked), and
prints it. `generate` prints a fresh key string without storing it, for
`GATEWAY_BOOTSTRAP_KEY(_FILE)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError

from common.caller import (
    ALL_SCOPES,
    DEFAULT_MEMBER_SCOPES,
    DEFAULT_TENANT,
    ROLES,
    TENANT_PATTERN,
    InvalidCaller,
    parse_scopes,
    valid_tenant,
)
from common.settings import redact_url, url_with_password
from gateway.keys import ApiKey, KeyStore, new_key
from gateway.settings import GatewaySettings

__all__ = ["ensure_local_key", "main"]


def _tenant(value: str) -> str:
    if not valid_tenant(value):
        raise argparse.ArgumentTypeError(
            f"invalid tenant name {value!r}: it must match {TENANT_PATTERN} "
            "(lower-case letters, digits, '_' and '-', starting with a letter or digit)"
        )
    return value


def _scopes(value: str) -> frozenset[str]:
    if value.strip() == "all":
        return frozenset(ALL_SCOPES)
    try:
        scopes = parse_scopes(value)
    except InvalidCaller as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not scopes:
        raise argparse.ArgumentTypeError("name at least one scope (or 'all')")
    return scopes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", help="Redis URL (default: the gateway's setting)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it")
    create.add_argument("--tenant", type=_tenant, default=DEFAULT_TENANT, help="default: default")
    create.add_argument("--role", choices=ROLES, default="member", help="default: member")
    create.add_argument(
        "--scopes",
        type=_scopes,
        default=frozenset(DEFAULT_MEMBER_SCOPES),
        help=f"comma-separated, or 'all'; known: {','.join(ALL_SCOPES)} "
        f"(default: {','.join(DEFAULT_MEMBER_SCOPES)})",
    )
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--rpm", type=int, help="requests per minute (default: the gateway's)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: the gateway's)")
    create.add_argument("--json", action="store_true", help="print the key and its record")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    commands.add_parser(
        "list", help="list keys (id, name, tenant, role, scopes, revoked), never the keys"
    )
    local = commands.add_parser("local", help="print the local admin key, creating it when needed")
    local.add_argument("--file", type=Path, default=Path("var/gateway/local_api_key"))
    commands.add_parser("generate", help="print a new key string; store nothing")
    return parser


def _is_local_admin(record: ApiKey) -> bool:
    return (
        record.role == "admin"
        and record.tenant == DEFAULT_TENANT
        and record.scopes == frozenset(ALL_SCOPES)
    )


async def ensure_local_key(store: KeyStore, path: Path) -> str:
    """The key stored in `path` when it is a live admin of tenant default with every scope;
    else a new such key, saved (a saved key that is live but less than that is revoked:
    only this file knew it)."""
    saved = _read_key(path)
    record = await store.lookup(saved) if saved else None
    if saved and record is not None and not record.revoked:
        if _is_local_admin(record):
            return saved
        await store.revoke(record.id)
        print(
            f"replaced the local key {record.id} (not an admin key) with a new one", file=sys.stderr
        )
    key, _ = await store.create("local", tenant=DEFAULT_TENANT, role="admin", scopes=ALL_SCOPES)
    _write_key(path, key)
    return key


def _read_key(path: Path) -> str | None:
    # A CLI's one small file: blocking reads are fine here.
    return path.read_text().strip() if path.exists() else None


def _write_key(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created private from the start: the key must not be readable by other users.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")


async def _run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        print(new_key())
        return 0
    url = _redis_url(args.redis_url)
    redis = aioredis.from_url(url, socket_connect_timeout=5)
    try:
        return await _command(args, KeyStore(redis))
    except AuthenticationError:
        print(
            "Redis refused the password: set GATEWAY_REDIS_URL (redis://:PASSWORD@host:port/0) "
            "or REDIS_PASSWORD_FILE to the platform's Redis password.",
            file=sys.stderr,
        )
        return 2
    except RedisError as exc:
        print(
            f"cannot use Redis at {redact_url(url)} ({exc}) Is the platform running "
            "(`make up`)? Otherwise set GATEWAY_REDIS_URL or pass --redis-url.",
            file=sys.stderr,
        )
        return 2
    finally:
        await redis.aclose()


def _redis_url(given: str | None) -> str:
    """The Redis URL to use, with `make up`'s local password when nothing names one."""
    settings = GatewaySettings()
    url = given or settings.redis_url
    local_password = settings.data_dir / "secrets" / "redis_password"
    named = urlsplit(url).password is not None or settings.redis_password_file is not None
    if named or not local_password.exists():
        return url
    return url_with_password(url, local_password.read_text().strip())


async def _command(args: argparse.Namespace, store: KeyStore) -> int:
    if args.command == "create":
        key, record = await store.create(
            args.name,
            args.rpm,
            args.tpm,
            tenant=args.tenant,
            role=args.role,
            scopes=args.scopes,
        )
        print(json.dumps({"key": key, **record.public()}) if args.json else key)
        return 0
    if args.command == "revoke":
        if not await store.revoke(args.key_id):
            print(f"no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
        return 0
    if args.command == "local":
        print(await ensure_local_key(store, args.file))
        return 0
    for record in await store.list():
        print(json.dumps(record.public()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
