"""A fresh headless chromium page for the web UI's tests (Debian's chromium via playwright).

`make test` installs the browser (Makefile target `browser`); without it the tests fail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright import sync_api

__all__ = ["CHROMIUM", "chromium_page"]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(profile: Path, **options: Any) -> Iterator[sync_api.Page]:
    """A page of a new browser with its own `--user-data-dir`, removed afterwards."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS, **options
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)
