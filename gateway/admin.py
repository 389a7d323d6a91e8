"""`python -m gateway.admin create|revoke|list|local`: manage the gateway's API keys.

Keys live in the gateway's Redis (`GATEWAY_REDIS_URL`, or `--redis-url`);
`create` prints the new key once: only its hash is stored. `local` is what
`make up` runs: it keeps one key for the local user in a file (mode 0600,
under the data dir), creating it when the file is missing or its key was
revoked, and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from gateway.keys import KeyStore
from gateway.settings import GatewaySettings

__all__ = ["ensure_local_key", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.admin", description=__doc__)
    parser.add_argument("--redis-url", help="Redis URL (default: the gateway's setting)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--rpm", type=int, help="requests per minute (default: the gateway's)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: the gateway's)")
    create.add_argument("--json", action="store_true", help="print the key and its record")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    commands.add_parser("list", help="list keys (ids, names, revoked), never the keys")
    local = commands.add_parser("local", help="print the local key, creating it when needed")
    local.add_argument("--file", type=Path, default=Path("var/gateway/local_api_key"))
    return parser


async def ensure_local_key(store: KeyStore, path: Path) -> str:
    """The key stored in `path` when Redis knows it and it is live; else a new one, saved."""
    saved = _read_key(path)
    record = await store.lookup(saved) if saved else None
    if saved and record is not None and not record.revoked:
        return saved
    key, _ = await store.create("local")
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
    url = args.redis_url or GatewaySettings().redis_url
    redis = aioredis.from_url(url, socket_connect_timeout=5)
    try:
        store = KeyStore(redis)
        if args.command == "create":
            key, record = await store.create(args.name, args.rpm, args.tpm)
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
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
