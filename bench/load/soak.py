"""What a soak checks before and after: the processes' resources and the data kept.

Resources: resident memory (VmRSS) and open file descriptors of every process the
launcher runs (the eight services and Redis, from `run/launcher.json` in its var dir),
and each service's `http_requests_in_flight` from /metrics (asyncio task counts are
not exposed; requests in flight after the load stopped is what a leak or an
unbounded queue would show). Data: the number of keys in Redis, the collections and
their document counts, and the top answers of a fixed wiki search, which must be the
same afterwards (the load only adds documents to its own collection).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import redis

from common.contracts.rag import CollectionList, SearchResponse
from common.topology import SERVICES
from launcher.config import LaunchConfig

__all__ = ["compare", "data_snapshot", "resources"]

PROBE_QUERY = {"query": "ancient Greek philosophy", "k": 5}


def _process(pid: int) -> dict[str, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return {"pid": pid, "rss_mib": int(match.group(1)) // 1024 if match else 0, "fds": fds}


def _in_flight(url: str) -> float | None:
    try:
        text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    except httpx.HTTPError:
        return None
    values = re.findall(r"^http_requests_in_flight\{[^}]*\} ([0-9.e+-]+)$", text, re.MULTILINE)
    return sum(float(v) for v in values) if values else None


def resources(var_dir: Path, gateway_url: str) -> dict[str, dict[str, Any]]:
    """RSS (MiB), open fds and requests in flight of each process the launcher runs."""
    state = json.loads((var_dir / "run" / "launcher.json").read_text())
    base = int(gateway_url.rsplit(":", 1)[1]) - SERVICES["gateway"].port
    out: dict[str, dict[str, Any]] = {}
    for name, process in sorted(state["processes"].items()):
        sample: dict[str, Any] = _process(int(process["pid"])) or {"pid": process["pid"]}
        sample["restarts"] = process.get("restarts", 0)
        if name in SERVICES:
            port = base + SERVICES[name].port
            sample["in_flight"] = _in_flight(f"http://127.0.0.1:{port}")
        out[name] = sample
    return out


def _redis_client(var_dir: Path, gateway_url: str) -> redis.Redis:
    base = int(gateway_url.rsplit(":", 1)[1]) - SERVICES["gateway"].port
    config = LaunchConfig.from_env(
        {"PLATFORM_PORT_BASE": str(base + 8000), "PLATFORM_VAR_DIR": str(var_dir)}
    )
    config.redis_password = (var_dir / "secrets" / "redis_password").read_text().strip()
    return redis.Redis.from_url(config.redis_url, socket_timeout=5)


def data_snapshot(var_dir: Path, gateway_url: str, key: str) -> dict[str, Any]:
    """Redis key count, collections with their document counts, a fixed search's top ids."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=60, trust_env=False) as http:
        collections = CollectionList.model_validate_json(http.get("/v1/collections").content)
        search = http.post("/v1/collections/wiki/search", json=PROBE_QUERY)
    hits = SearchResponse.model_validate_json(search.content)
    return {
        "redis_keys": int(_redis_client(var_dir, gateway_url).dbsize()),
        "collections": {c.name: c.documents for c in collections.data},
        "wiki_top": [hit.chunk_id for hit in hits.results],
    }


def compare(before: dict[str, Any], after: dict[str, Any], own: str) -> list[str]:
    """What changed that should not have: lost keys, lost collections or documents."""
    problems = []
    if after["redis_keys"] < before["redis_keys"]:
        problems.append(f"Redis lost keys: {before['redis_keys']} -> {after['redis_keys']}")
    for name, count in before["collections"].items():
        now = after["collections"].get(name)
        if now is None:
            problems.append(f"collection {name} is gone")
        elif name != own and now != count:
            problems.append(f"collection {name}: {count} -> {now} documents")
    if before["wiki_top"] != after["wiki_top"]:
        problems.append(f"wiki search changed: {before['wiki_top']} -> {after['wiki_top']}")
    return problems
