"""The report's charts as small PNGs (matplotlib, Agg: no display needed).

Each function draws one chart from the report's results (the JSON that
`bench.report` writes) and returns the file it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure as Canvas
from matplotlib.patches import Rectangle

__all__ = ["CHARTS", "draw_all"]

DPI = 90


def _save(fig: Canvas, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def throughput(results: dict[str, Any], path: Path) -> Path:
    rows = results["throughput"]["aggregate"]
    clients = sorted(int(c) for c in rows)
    values = [rows[str(c)] for c in clients]
    medians = [sorted(v)[len(v) // 2] for v in values]
    low = [m - min(v) for m, v in zip(medians, values, strict=True)]
    high = [max(v) - m for m, v in zip(medians, values, strict=True)]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.errorbar(clients, medians, yerr=[low, high], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_title("Core model throughput (median, range of rounds)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latency_distributions(results: dict[str, Any], path: Path) -> Path:
    ttft, itl = results["throughput"]["ttft_ms"], results["throughput"]["itl_ms"]
    clients = sorted(ttft, key=int)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2))
    left.boxplot([ttft[c] for c in clients], tick_labels=clients, showfliers=False)
    left.set_title("time to first token")
    right.boxplot([itl[c] for c in clients], tick_labels=clients, showfliers=False)
    right.set_title("inter-token latency")
    for ax in (left, right):
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def expert_load(results: dict[str, Any], path: Path) -> Path:
    domains = results["experts"]
    names = list(domains)
    shares = []
    for name in names:
        per_expert = [sum(column) for column in zip(*domains[name], strict=True)]
        total = sum(per_expert) or 1
        shares.append([v / total for v in per_expert])
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.4))
    image = ax.imshow(shares, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(len(shares[0])), [str(e) for e in range(len(shares[0]))])
    ax.set_xlabel("expert (tokens summed over the 30 layers)")
    ax.set_title("Expert load per domain (share of routed tokens)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def retrieval(results: dict[str, Any], path: Path) -> Path:
    forms = results["retrieval"]
    methods = [m for m in next(iter(forms.values())) if not m.endswith(" ms")]
    width = 0.8 / len(forms)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for i, (form, table) in enumerate(forms.items()):
        xs = [j + i * width for j in range(len(methods))]
        ax.bar(xs, [table[m] for m in methods], width, label=f"{form} -> article")
    ax.set_xticks([j + width * (len(forms) - 1) / 2 for j in range(len(methods))], methods)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("nDCG@10")
    ax.set_title("Retrieval quality by method (BBC News)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def reasoning(results: dict[str, Any], path: Path) -> Path:
    rows = results["math"]["strategies"]
    names = list(rows)
    values = [rows[n]["value"] for n in names]
    errors = [
        [rows[n]["value"] - rows[n]["low"] for n in names],
        [rows[n]["high"] - rows[n]["value"] for n in names],
    ]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(names, values, yerr=errors, capsize=4, color="#4c72b0")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_title("Held-out word problems by reasoning strategy")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def timeline(results: dict[str, Any], path: Path) -> Path:
    rows = results["timelines"]
    fig, ax = plt.subplots(figsize=(7.5, 0.7 * len(rows) + 1.2))
    colours: dict[str, Any] = {}
    palette = plt.get_cmap("tab10")
    labels = []
    for y, (intent, row) in enumerate(rows.items()):
        labels.append(f"{intent}\n(routed: {row['routed_to']})")
        ax.barh(y + 0.3, row["client_ms"], height=0.15, color="#bbbbbb")
        for step in row["steps"]:
            colour = colours.setdefault(step["name"], palette(len(colours) % 10))
            ax.barh(y, step["end"] - step["start"], left=step["start"], height=0.4, color=colour)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms from the router's start (grey: the client's whole request)")
    ax.set_title("One `auto` request per intent: the pipeline's steps")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


CHARTS = {
    "throughput.png": throughput,
    "latency.png": latency_distributions,
    "expert_load.png": expert_load,
    "retrieval.png": retrieval,
    "reasoning.png": reasoning,
    "timeline.png": timeline,
}


def draw_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [draw(results, out_dir / name) for name, draw in CHARTS.items()]
