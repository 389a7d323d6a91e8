"""`python -m curate`: curate a JSONL file, a folder of text files or a rag collection.

    python -m curate INPUT --out OUTPUT.jsonl [--report REPORT.json] [--lang en,...]
    python -m curate --collection NAME [--rag-url URL] --out OUTPUT.jsonl

Kept records go to OUTPUT (one JSON object a line, `id` and `text` and the input's
other fields); every removed record goes to the rejects file (default
OUTPUT.rejects.jsonl) with the stage that removed it and why; the report (JSON)
counts what each stage removed or edited, with examples and time per stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from curate.dedup import NearSettings
from curate.language import DEFAULT_CANDIDATES, LanguageSettings, iso_code
from curate.pipeline import Rejected
from curate.quality import QualityRules
from curate.rag_source import DEFAULT_RAG_URL, RagSourceError, read_collection
from curate.records import BadRecord, Record, read_folder, read_jsonl
from curate.stages import STAGE_ORDER, CurationConfig, build_pipeline

__all__ = ["main", "parse_args"]


def _codes(value: str) -> tuple[str, ...]:
    codes = tuple(c.strip().lower() for c in value.split(",") if c.strip())
    for code in codes:
        try:
            iso_code(code)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return codes


def _stages(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = sorted(set(names) - set(STAGE_ORDER))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stages {unknown}; choose from {STAGE_ORDER}")
    return names


def _quality_rule(value: str) -> tuple[str, float]:
    name, _, number = value.partition("=")
    scalar = {f.name for f in dataclasses.fields(QualityRules) if f.type in ("int", "float")}
    if name not in scalar:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {sorted(scalar)}")
    try:
        return name, float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: the value is not a number") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m curate", description=__doc__.split("\n")[0])
    p.add_argument("input", nargs="?", type=Path, help="a JSONL file or a folder of text files")
    p.add_argument("--out", type=Path, required=True, help="curated records (JSONL)")
    p.add_argument("--report", type=Path, help="the report (JSON); default: printed to stdout")
    p.add_argument("--rejects", type=Path, help="removed records; default OUT.rejects.jsonl")
    p.add_argument("--stages", type=_stages, default=STAGE_ORDER, help="stages to run")
    p.add_argument("--lang", type=_codes, default=("en",), help="languages to keep (en,fr,...)")
    p.add_argument(
        "--lang-candidates",
        type=_codes,
        default=DEFAULT_CANDIDATES,
        help="languages the detector chooses among (fewer: faster)",
    )
    p.add_argument("--min-lang-confidence", type=float, default=LanguageSettings.min_confidence)
    p.add_argument(
        "--lang-high-accuracy",
        action="store_true",
        help="lingua's full models: better on short texts, seconds to load",
    )
    p.add_argument("--near-threshold", type=float, default=NearSettings.threshold)
    p.add_argument("--num-perm", type=int, default=NearSettings.num_perm)
    p.add_argument("--shingle", type=int, default=NearSettings.shingle)
    p.add_argument(
        "--quality",
        type=_quality_rule,
        action="append",
        default=[],
        metavar="RULE=VALUE",
        help="override a quality threshold, e.g. min_words=20 (see curate/quality.py)",
    )
    p.add_argument("--collection", help="curate this rag collection instead of INPUT")
    p.add_argument("--rag-url", default=DEFAULT_RAG_URL, help="rag_svc's (or the gateway's) URL")
    p.add_argument(
        "--api-key-env",
        default="CURATE_API_KEY",
        help="environment variable holding the API key for --rag-url",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if (args.input is None) == (args.collection is None):
        p.error("give either INPUT or --collection")
    if args.input is not None and not args.input.exists():
        p.error(f"{args.input} does not exist")
    if not 0.0 < args.near_threshold <= 1.0:
        p.error("--near-threshold must be in (0, 1]")
    return args


def config_from(args: argparse.Namespace) -> CurationConfig:
    rules = QualityRules()
    overrides = {name: type(getattr(rules, name))(value) for name, value in args.quality}
    return CurationConfig(
        stages=args.stages,
        near=NearSettings(args.near_threshold, args.num_perm, args.shingle),
        language=LanguageSettings(
            keep=args.lang,
            candidates=args.lang_candidates,
            min_confidence=args.min_lang_confidence,
            high_accuracy=args.lang_high_accuracy,
        ),
        quality=dataclasses.replace(rules, **overrides),
    )


def _source(args: argparse.Namespace) -> Iterator[Record | BadRecord]:
    if args.collection is not None:
        return read_collection(args.rag_url, args.collection, args.api_key_env)
    if args.input.is_dir():
        return read_folder(args.input)
    return read_jsonl(args.input)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (RagSourceError, httpx.HTTPError) as exc:
        print(f"curate: cannot read the collection: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    pipeline = build_pipeline(config)
    rejects_path = args.rejects or args.out.with_name(args.out.name + ".rejects.jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out, rejects_path.open("w") as rejects:
        outcomes = tqdm(
            pipeline.run(_source(args)),
            desc="curate",
            unit=" records",
            file=sys.stderr,
            disable=args.quiet,
        )
        for outcome in outcomes:
            if isinstance(outcome, Rejected):
                rejects.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
            else:
                out.write(json.dumps(outcome.to_json(), ensure_ascii=False) + "\n")
    report: dict[str, Any] = {
        "input": str(args.input) if args.input else f"{args.rag_url} collection {args.collection}",
        "output": str(args.out),
        "rejects": str(rejects_path),
        "config": dataclasses.asdict(config),
        **pipeline.report(),
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    print(
        f"curate: {report['records_in']} records in, {report['kept']} kept, "
        f"{report['removed']} removed (listed in {rejects_path})",
        file=sys.stderr,
    )
    return 0
