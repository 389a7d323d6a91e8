"""`python -m <service>`: validate settings, configure logging, serve with uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from common.log import configure_logging
from common.settings import ServiceSettings

__all__ = ["serve"]

S = TypeVar("S", bound=ServiceSettings)


def serve(
    create_app: Callable[[S], FastAPI],
    settings_factory: Callable[[], S],
) -> None:
    """Run a service in this process until SIGINT/SIGTERM.

    Invalid settings end the process with status 2 and a message naming the
    variable to fix, not a stack trace.
    """
    try:
        settings = settings_factory()
    except ValidationError as exc:
        lines = [f"invalid configuration ({exc.error_count()} error(s)):"]
        for err in exc.errors():
            lines.append(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
