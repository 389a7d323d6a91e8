"""docs/report.md from the report's results: the success-metrics table, the platform's
own metrics, the charts, and how each figure was measured."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bench.report.figures import Figure

__all__ = ["TARGETS", "load_targets", "render"]

TARGETS = Path(__file__).resolve().parents[1] / "data" / "report_targets.toml"


def load_targets() -> dict[str, Any]:
    return tomllib.loads(TARGETS.read_text())


def _f(data: dict[str, Any]) -> Figure:
    return Figure.from_dict(data)


def _share(data: dict[str, Any]) -> str:
    figure = _f(data)
    return f"**{figure.value:.3f}** ({round(figure.value * figure.n)}/{figure.n})"


def _interval(data: dict[str, Any], digits: int = 3) -> str:
    figure = _f(data)
    return f"{figure.low:.{digits}f}-{figure.high:.{digits}f} ({figure.spread}, n={figure.n})"


def _value(data: dict[str, Any], digits: int = 1) -> str:
    return f"**{_f(data).value:.{digits}f}**"


def seed_table(results: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    k, c, m = results["knowledge"], results["code"], results["math"]
    t, cost, ctx = results["throughput"], results["cost"], results["context"]
    best = m["best"]
    rows = [
        (
            "Knowledge QA, closed-book (the model alone)",
            _share(k["closed_book"]),
            _interval(k["closed_book"]),
            "",
            targets["knowledge"]["best"],
        ),
        (
            "Knowledge QA, with RAG (model `auto`)",
            _share(k["rag"]),
            _interval(k["rag"]),
            targets["knowledge"]["target"],
            "",
        ),
        (
            "Code: HumanEval pass@1 (sandbox)",
            _share(c["pass_at_1"]),
            _interval(c["pass_at_1"]),
            targets["code"]["target"],
            targets["code"]["best"],
        ),
    ]
    for strategy, figure in m["strategies"].items():
        label = f"Math: held-out word problems, `{strategy}`"
        if strategy == best:
            label += " (best)"
        goal = targets["math"]["target"] if strategy == "pal" else ""
        shown = targets["math"]["best"] if strategy == "direct" else ""
        rows.append((label, _share(figure), _interval(figure), goal, shown))
    rows += [
        (
            "Throughput, batch 1 (tokens/s)",
            _value(t["batch1"]),
            _interval(t["batch1"], 1),
            targets["throughput"]["target"],
            targets["throughput"]["best"],
        ),
        (
            f"Throughput, {t['streams']} streams (aggregate tokens/s)",
            _value(t["many"]),
            _interval(t["many"], 1),
            "",
            "",
        ),
        (
            f"Cost per 1M tokens ({t['streams']} streams)",
            f"**${cost['many']:.3f}**",
            f"${cost['many_low']:.3f}-${cost['many_high']:.3f} (from the throughput range)",
            targets["cost"]["target"],
            targets["cost"]["best"],
        ),
        (
            "Cost per 1M tokens (batch 1)",
            f"**${cost['batch1']:.3f}**",
            f"${cost['batch1_low']:.3f}-${cost['batch1_high']:.3f}",
            "",
            "",
        ),
        (
            "Context window (tokens)",
            f"**{ctx['window']}**",
            f"a {ctx['conversation_tokens']}-token conversation ({ctx['turns']} turns) -> "
            f"{ctx['context_tokens']}-token context (budget {ctx['budget_tokens']}), "
            f"summary: {'yes' if ctx['summarised'] else 'no'}, dropped {ctx['dropped']}; "
            f"first-turn fact recalled: {'yes' if ctx['recalled'] else 'no'}",
            targets["context"]["target"],
            targets["context"]["best"],
        ),
    ]
    lines = [
        "| metric | measured | spread | target | best in class |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    vm = targets["vm"]
    lines += [
        "",
        f"Cost arithmetic: a comparable VM, {vm['name']}, costs ${vm['usd_per_hour']:.4f} an "
        f"hour (quoted {vm['quoted']}). At {_f(t['many']).value:.1f} tokens/s "
        f"({t['streams']} streams) it makes {_f(t['many']).value * 3600:,.0f} tokens an hour: "
        f"${vm['usd_per_hour']:.4f} / {_f(t['many']).value * 3600:,.0f} x 1,000,000 = "
        f"**${cost['many']:.3f}** per 1M tokens; at batch 1 "
        f"({_f(t['batch1']).value:.1f} tokens/s) ${cost['batch1']:.3f}.",
    ]
    return lines


def platform_table(results: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    goals = targets["goals"]
    intent, retrieval = results["intent"], results["retrieval"]
    rows = [
        (
            "Intent accuracy (router, held-out test split)",
            _share(intent["accuracy"]),
            _interval(intent["accuracy"]),
            f">= {goals['intent_accuracy']}",
        ),
        ("Intent macro-F1", f"**{_f(intent['macro_f1']).value:.3f}**", "", ""),
        (
            "`/v1/route` p50 ms",
            _value(intent["route_p50_ms"]),
            _interval(intent["route_p50_ms"], 1),
            f"< {goals['route_p50_ms']:g}",
        ),
    ]
    for form, table in retrieval.items():
        rows.append(
            (
                f"Retrieval nDCG@10, {form} -> article (hybrid + rerank)",
                f"**{table['hybrid + rerank']:.3f}**",
                f"bm25s reference {table['bm25s (reference)']:.3f} (same run)",
                f">= {goals['retrieval_ndcg']}",
            )
        )
    images = results["images"]
    rows += [
        (
            "Image prompt adherence (guided diffusion)",
            _share(images["adherence"]),
            _interval(images["adherence"]),
            f">= {goals['image_adherence']}",
        ),
        (
            "Gateway overhead ms (`x-gateway-overhead-ms`, p50)",
            _value(results["gateway_overhead_ms"], 2),
            _interval(results["gateway_overhead_ms"], 2),
            f"< {goals['gateway_overhead_ms']:g}",
        ),
    ]
    for name, figure in results["memory_ms"].items():
        rows.append((f"memory_svc {name} p50 ms", _value(figure), _interval(figure, 1), ""))
    for name, figure in results["tools_ms"].items():
        rows.append((f"tools_svc {name} p50 ms", _value(figure), _interval(figure, 1), ""))
    lines = ["| metric | measured | spread | goal |", "|---|---|---|---|"]
    return lines + [f"| {' | '.join(row)} |" for row in rows]


def detail_tables(results: dict[str, Any]) -> list[str]:
    t = results["throughput"]
    lines = [
        "### Throughput",
        "",
        f"moe_svc directly, {t['tokens']} new tokens per stream (`ignore_eos`), "
        f"{t['rounds']} rounds per row.",
        "",
        "| streams | aggregate tok/s (median) | range | TTFT p50 / p95 ms | ITL p50 / p95 ms |",
        "|---|---|---|---|---|",
    ]
    for clients, values in t["aggregate"].items():
        q = t["quantiles"][clients]
        lines.append(
            f"| {clients} | {sorted(values)[len(values) // 2]:.1f} | "
            f"{min(values):.1f}-{max(values):.1f} | {q['ttft_p50']:.0f} / {q['ttft_p95']:.0f} | "
            f"{q['itl_p50']:.0f} / {q['itl_p95']:.0f} |"
        )
    lines += ["", "### Retrieval by method (nDCG@10; p50 ms)", ""]
    forms = results["retrieval"]
    methods = [m for m in next(iter(forms.values())) if not m.endswith(" ms")]
    lines.append("| method | " + " | ".join(f"{f} -> article" for f in forms) + " |")
    lines.append("|---|" + "---|" * len(forms))
    for method in methods:
        cells = [f"{forms[f][method]:.3f} ({forms[f][method + ' ms']:.0f} ms)" for f in forms]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Math by strategy",
        "",
        "| strategy | accuracy | 95% interval | s / problem | model calls / problem |",
        "|---|---|---|---|---|",
    ]
    for strategy, figure in results["math"]["strategies"].items():
        cost = results["math"]["costs"][strategy]
        lines.append(
            f"| {strategy} | {_share(figure)} | {_f(figure).low:.3f}-{_f(figure).high:.3f} | "
            f"{cost['seconds_per_problem']:.1f} | {cost['calls_per_problem']:.1f} |"
        )
    lines += [
        "",
        "### One `auto` request per intent",
        "",
        "| prompt's intent | routed to | client ms | router ms | steps (start-end ms) |",
        "|---|---|---|---|---|",
    ]
    for intent, row in results["timelines"].items():
        steps = ", ".join(f"{s['name']} {s['start']:.0f}-{s['end']:.0f}" for s in row["steps"])
        lines.append(
            f"| {intent} | {row['routed_to']} | {row['client_ms']:.0f} | "
            f"{row['router_ms']:.0f} | {steps} |"
        )
    return lines


CHART_TITLES = {
    "throughput.png": "Tokens/s against concurrent streams",
    "latency.png": "TTFT and inter-token latency distributions",
    "expert_load.png": "Expert load per domain",
    "retrieval.png": "Retrieval quality by method",
    "reasoning.png": "Accuracy by reasoning strategy",
    "timeline.png": "Latency breakdown of one `auto` request per intent",
}


def reproducibility(meta: dict[str, Any]) -> list[str]:
    """This run against the report it replaced: does each figure land in that one's spread?"""
    previous = meta.get("previous")
    if not previous:
        return []
    rows = previous["rows"]
    inside = sum(1 for row in rows if row["within"])
    lines = [
        "## Reproducibility",
        "",
        f"This run's figures against the spreads of the report it replaced ({previous['mode']} "
        f"mode, {previous['date']}, commit `{previous['commit']}`): {inside} of {len(rows)} "
        "within.",
        "",
        "| figure | previous run (spread) | this run | within |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['figure']} | {row['value']:.3f} ({row['low']:.3f}-{row['high']:.3f}, "
            f"{row['spread']}) | {row['rerun']:.3f} | {'yes' if row['within'] else '**no**'} |"
        )
    return [*lines, ""]


def render(results: dict[str, Any], chart_dir: str) -> str:
    targets = load_targets()
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        "# Platform report",
        "",
        "Generated by `python -m bench.report"
        + (" --quick" if meta["mode"] == "quick" else "")
        + "` (`make report`); do not edit by hand. Targets and best-in-class figures: "
        "`bench/data/report_targets.toml`.",
        "",
        f"- date: {meta['date']}",
        f"- commit: `{meta['commit']}`" + (" (with uncommitted changes)" if meta["dirty"] else ""),
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"{machine['os']}; Python {machine['python']}, torch {machine['torch']}",
        f"- mode: {meta['mode']} ({meta['wall_s'] / 60:.1f} min wall); the machine's 1-minute "
        f"load average {meta['load'][0]} at the start, {meta['load'][1]} at the end "
        f"({machine['cores']} cores: above that, other work shared them)",
        f"- samples: {meta['samples']}",
        "",
        "## Success metrics",
        "",
        *seed_table(results, targets),
        "",
        "## The platform's own metrics",
        "",
        *platform_table(results, targets),
        "",
        "## Charts",
        "",
    ]
    for name, title in CHART_TITLES.items():
        lines += [f"### {title}", "", f"![{title}]({chart_dir}/{name})", ""]
    lines += reproducibility(meta)
    lines += ["## Details", "", *detail_tables(results), "", "## How it was measured", ""]
    lines += [f"- {line}" for line in results["meta"]["method"]]
    return "\n".join(lines) + "\n"
