"""The load report: per scenario and per ramp step, from the records the locustfile wrote.

A record is one answer (or a request that got none): its scenario, when it ended,
its latency, its status (0: no answer, `error` says why: a timeout is a hang), the
users running then, `Retry-After` if any, and for streams the time to first token
and the tokens per second. Load shedding is 429 or 503 with `Retry-After`; any other
5xx, a 503 without `Retry-After`, or no answer at all is a defect.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

__all__ = ["build_report", "render_markdown", "render_table", "write_report"]

Record = dict[str, Any]
SHED = (429, 503)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(records: list[Record], seconds: float) -> dict[str, Any]:
    answered = [r for r in records if r["status"] == 200]
    statuses = Counter(str(r["status"] or r.get("error") or "no answer") for r in records)
    shed = [r for r in records if r["status"] in SHED]
    defects = [
        r
        for r in records
        if r["status"] == 0
        or (r["status"] >= 500 and r["status"] != 503)
        or (r["status"] in SHED and not r.get("retry_after"))
    ]
    latencies = [r["ms"] for r in answered]
    ttft = [r["ttft_ms"] for r in answered if r.get("ttft_ms") is not None]
    rates = [r["tokens_per_s"] for r in answered if r.get("tokens_per_s")]
    return {
        "requests": len(records),
        "answered": len(answered),
        "rps": len(answered) / seconds if seconds > 0 else 0.0,
        "p50_ms": _pct(latencies, 0.50),
        "p95_ms": _pct(latencies, 0.95),
        "p99_ms": _pct(latencies, 0.99),
        "error_rate": 1 - len(answered) / len(records) if records else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "shed": len(shed),
        "defects": len(defects),
        "ttft_p50_ms": _pct(ttft, 0.50),
        "ttft_p95_ms": _pct(ttft, 0.95),
        "tokens_per_s": statistics.median(rates) if rates else None,
    }


def _saturation(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first step where more users bought little throughput and much latency, or shed."""
    for before, step in itertools.pairwise(steps):
        more_users = step["users"] > before["users"]
        flat = step["rps"] < before["rps"] * 1.15
        slower = (step["p95_ms"] or 0) > (before["p95_ms"] or 0) * 1.5
        if more_users and ((flat and slower) or step["shed"] > 0):
            return {"users": step["users"], "rps": step["rps"], "before": before["users"]}
    return None


def build_report(records: list[Record], started: float, ended: float) -> dict[str, Any]:
    """Scenarios, ramp steps and the saturation point of one run."""
    seconds = ended - started
    by_scenario: dict[str, list[Record]] = defaultdict(list)
    by_users: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        if record["scenario"] in ("models", "collection"):
            continue  # each user's start, not what it does
        by_scenario[record["scenario"]].append(record)
        by_users[int(record.get("users") or 0)].append(record)
    steps = []
    for users, step_records in sorted(by_users.items()):
        ends = [r["t"] for r in step_records]
        span = max(ends) - min(ends) if len(ends) > 1 else seconds
        steps.append({"users": users, **_summary(step_records, max(span, 1.0))})
    scenarios = {name: _summary(rs, seconds) for name, rs in sorted(by_scenario.items())}
    overall = _summary([r for rs in by_scenario.values() for r in rs], seconds)
    return {
        "seconds": round(seconds, 1),
        "overall": overall,
        "scenarios": scenarios,
        "steps": steps,
        "saturation": _saturation(steps),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, s in [*report["scenarios"].items(), ("all", report["overall"])]:
        statuses = " ".join(f"{k}:{v}" for k, v in s["statuses"].items())
        tps = "-" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:.1f}"
        rows.append([
            name, str(s["requests"]), f"{s['rps']:.2f}", _ms(s["p50_ms"]), _ms(s["p95_ms"]),
            _ms(s["p99_ms"]), f"{s['error_rate']:.1%}", statuses, _ms(s["ttft_p50_ms"]), tps,
        ])  # fmt: skip
    return rows


HEADER = ["scenario", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "statuses",
          "TTFT p50", "tok/s"]  # fmt: skip
STEP_HEADER = ["users", "requests", "req/s", "p50 ms", "p95 ms", "errors", "shed", "defects"]


def _step_rows(report: dict[str, Any]) -> list[list[str]]:
    return [
        [str(s["users"]), str(s["requests"]), f"{s['rps']:.2f}", _ms(s["p50_ms"]),
         _ms(s["p95_ms"]), f"{s['error_rate']:.1%}", str(s["shed"]), str(s["defects"])]
        for s in report["steps"]
    ]  # fmt: skip


def _verdict(report: dict[str, Any]) -> str:
    overall, saturation = report["overall"], report["saturation"]
    parts = [f"{report['seconds']:.0f} s, {overall['requests']} requests"]
    if saturation:
        parts.append(
            f"saturated at {saturation['users']} users ({saturation['rps']:.2f} req/s; "
            f"{saturation['before']} users did not)"
        )
    else:
        parts.append("no saturation step found in this ramp")
    parts.append(f"shed {overall['shed']} (429/503 with Retry-After)")
    parts.append(f"defects {overall['defects']} (5xx, 503 without Retry-After, no answer)")
    return "; ".join(parts)


def render_table(report: dict[str, Any]) -> str:
    """A plain-text table of scenarios and ramp steps, for the terminal."""

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=False)]
        return [
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            )
            for r in [header, *rows]
        ]

    lines = [*table(HEADER, _rows(report)), "", *table(STEP_HEADER, _step_rows(report))]
    return "\n".join([*lines, "", _verdict(report)])


def render_markdown(report: dict[str, Any]) -> str:
    """The same tables in Markdown, for docs/reliability.md."""

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]

    lines = [*table(HEADER, _rows(report)), "", *table(STEP_HEADER, _step_rows(report))]
    return "\n".join([*lines, "", _verdict(report), ""])


def write_report(report: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """`<stem>.json` and `<stem>.md` under `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    return [json_path, md_path]
