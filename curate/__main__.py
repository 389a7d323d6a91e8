"""Entry point of `python -m curate` (see curate/cli.py)."""

from curate.cli import main

raise SystemExit(main())
