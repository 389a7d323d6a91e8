"""The web UI's Report page: the committed report (docs/report.md, its charts) and a live
view of the platform's essentials (requests, generated tokens, expert load).

`/report` is the page; `/report/files/...` serves what `python -m bench.report` wrote
(read-only, known names only); `/report/live` is one JSON sample of counters that the
page turns into rates between polls. Like `/metrics`, none of them needs a key: they
carry counts and the published report, nothing of any caller's.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from common.errors import NotFound, ServiceError
from common.metrics import ServiceMetrics
from gateway.api import STATIC_DIR
from gateway.deps import UpstreamsDep

__all__ = ["REPORT_DIR", "router"]

# docs/ beside the gateway package: the repository, or /app in the gateway's image.
REPORT_DIR = Path(__file__).resolve().parents[1] / "docs"
_CHART = re.compile(r"[a-z_]+\.(png|json)")
# Requests the UI itself makes while it watches: not the platform's traffic.
_WATCHING = ("/report", "/metrics", "/readyz", "/healthz", "/static", "/")

router = APIRouter(include_in_schema=False)


@router.get("/report")
async def report_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "report.html", headers={"Cache-Control": "no-cache"})


@router.get("/report/files/report.md")
async def report_markdown() -> FileResponse:
    return _file(REPORT_DIR / "report.md", "text/markdown; charset=utf-8")


@router.get("/report/files/report/{name}")
async def report_file(name: str) -> FileResponse:
    if not _CHART.fullmatch(name):
        raise NotFound(f"No report file {name!r}.", param="name")
    media = "image/png" if name.endswith(".png") else "application/json"
    return _file(REPORT_DIR / "report" / name, media)


@router.get("/report/live")
async def live(request: Request, upstreams: UpstreamsDep) -> dict[str, Any]:
    """Counters since each process started; the page differences two samples."""
    metrics: ServiceMetrics = request.app.state.metrics
    moe = upstreams["moe_svc"]
    sample: dict[str, Any] = {
        "time": time.time(),
        "requests": _platform_requests(metrics),
        "generated_tokens": None,
        "experts": None,
    }
    try:
        text = (await moe.request("GET", "/metrics")).text
        sample["generated_tokens"] = _counter(text, "moe_generated_tokens_total")
        stats = await moe.get_json("/v1/experts/stats")
        sample["experts"] = [sum(column) for column in zip(*stats["counts"], strict=True)]
    except ServiceError:
        pass  # moe_svc down: the page shows the gateway's figures alone
    return sample


def _file(path: Path, media_type: str) -> FileResponse:
    if not path.is_file():
        raise NotFound("No report has been written yet: run `make report`.")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


def _platform_requests(metrics: ServiceMetrics) -> float:
    total = 0.0
    for family in metrics.requests.collect():
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name.endswith("_total") and not _is_watching(route):
                total += sample.value
    return total


def _is_watching(route: str) -> bool:
    return route == "/" or any(route.startswith(p) for p in _WATCHING if p != "/")


def _counter(text: str, name: str) -> float:
    """The sum of a counter's samples in Prometheus' text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
