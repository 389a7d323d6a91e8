"""`python -m moe_svc.preference`: tune the served model on a feedback export into a new version.

    # KTO on the thumbs up/down export, 40 steps, into var/models/versions/kto-1207/
    curl -H "Authorization: Bearer $ADMIN_KEY" \
        "http://127.0.0.1:8000/v1/feedback/export?format=kto" > feedback.jsonl
    python -m moe_svc.preference --method kto --data feedback.jsonl --version kto-1207 \
        --steps 40 --threads 2

The parent (`--base`, default: the served model, MOE_MODEL_DIR or the default
model under MOE_DATA_DIR/models) is only read. The version is written whole
under a temporary name and renamed, never over an existing one. Rerunning the
same command after an interruption resumes from the last checkpoint; a larger
--steps continues a run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from moe_svc.build_default import MOE_NAME
from moe_svc.preference.build import build_version
from moe_svc.preference.tuning import TuneSettings
from moe_svc.preference.versions import VersionExistsError
from moe_svc.settings import MoeSettings

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    defaults = TuneSettings(method="kto", steps=0)
    p = argparse.ArgumentParser(
        prog="python -m moe_svc.preference",
        description=__doc__.split("\n")[0].split(": ", 1)[1],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--method", choices=["kto", "dpo"], required=True)
    p.add_argument("--data", type=Path, required=True, help="feedback export, JSON lines")
    p.add_argument("--version", required=True, help="new version id, e.g. kto-1207")
    p.add_argument("--base", type=Path, help="model directory to tune (default: the served one)")
    p.add_argument("--models-dir", type=Path, help="default: MOE_DATA_DIR/models")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps in all")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--beta", type=float, default=defaults.beta)
    p.add_argument("--rank", type=int, default=defaults.rank, help="LoRA rank per expert")
    p.add_argument("--alpha", type=int, default=defaults.alpha)
    p.add_argument("--max-length", type=int, default=defaults.max_length)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--save-every", type=int, default=defaults.save_every)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run's checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    moe = MoeSettings()
    models_dir = args.models_dir or moe.data_dir / "models"
    base = args.base or moe.model_dir or models_dir / MOE_NAME
    settings = TuneSettings(
        method=args.method,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        beta=args.beta,
        rank=args.rank,
        alpha=args.alpha,
        max_length=args.max_length,
        seed=args.seed,
        save_every=args.save_every,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    try:
        path = build_version(
            version_id=args.version,
            parent=base,
            models_dir=models_dir,
            data_path=args.data,
            settings=settings,
            threads=args.threads,
            fresh=args.fresh,
            progress=not args.no_progress,
        )
    # bad data (PreferenceDataError), another run's checkpoints (RunMismatchError), a taken
    # id, a missing parent: say which, exit 2
    except (ValueError, VersionExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
