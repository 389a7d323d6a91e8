"""`python -m gateway.rollout status|start|promote|rollback`: roll a tuned core-model
version out through a running gateway, then keep it or take it back.

    python -m gateway.rollout start my-kto-1 --share 0.1        # 10% of the requests
    python -m gateway.rollout start my-kto-1 --tenants acme     # every request of acme
    python -m gateway.rollout status                             # counts, up rates, p
    python -m gateway.rollout promote                            # needs a passed eval gate
    python -m gateway.rollout rollback

The key is an admin key of tenant `default` (`--key`, else `$GATEWAY_API_KEY`, else
the local key `make up` keeps in `var/gateway/local_api_key`); the gateway at `--url`
(default http://127.0.0.1:8000). Each command prints the rollout's status as JSON and
exits 1 with the gateway's error message when it refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["main"]

LOCAL_KEY = Path("var/gateway/local_api_key")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.rollout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway")
    parser.add_argument("--key", help="an admin key of tenant default")
    parser.add_argument("--timeout", type=float, default=660.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the running rollout, its counts, the versions")
    start = commands.add_parser("start", help="load a version and give it traffic")
    start.add_argument("candidate", help="the version id (a folder under models/versions)")
    start.add_argument("--share", type=float, default=0.0, help="share of requests, 0-1")
    start.add_argument("--tenants", default="", help="tenants it answers every request of")
    commands.add_parser("promote", help="make the candidate the current model")
    commands.add_parser("rollback", help="end the rollout, or undo the last promotion")
    return parser


def _key(given: str | None) -> str:
    key = given or os.environ.get("GATEWAY_API_KEY")
    if key:
        return key
    if LOCAL_KEY.exists():
        return LOCAL_KEY.read_text().strip()
    raise SystemExit(
        "No API key: pass --key or set GATEWAY_API_KEY (an admin key of tenant default)."
    )


def _call(args: argparse.Namespace) -> httpx.Response:
    headers = {"Authorization": f"Bearer {_key(args.key)}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=args.timeout) as client:
        path = "/v1/admin/rollout"
        if args.command == "status":
            return client.get(path)
        if args.command == "start":
            tenants = [t.strip() for t in args.tenants.split(",") if t.strip()]
            body: dict[str, Any] = {
                "candidate": args.candidate,
                "share": args.share,
                "tenants": tenants,
            }
            return client.put(path, json=body)
        return client.post(f"{path}/{args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        response = _call(args)
    except httpx.HTTPError as exc:
        print(f"could not reach the gateway at {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text}}
    if response.status_code >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        print(f"{response.status_code}: {error.get('message', body)}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
