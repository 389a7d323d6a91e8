"""Structured JSON logging; every record carries the service, request id and caller.

A record made while a request is served also names the caller's tenant and
key id (`common.caller`) and, at the gateway, the client's own request id.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from common.caller import caller_var
from common.request_context import (
    client_request_id_var,
    current_model_version,
    current_request_id,
)

__all__ = ["JsonFormatter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    # uvicorn adds an ANSI-coloured duplicate of the message.
    | {"message", "asctime", "color_message"}
)

# Field names that must never reach a log line with their value.
_SECRET_KEYS = ("authorization", "api_key", "apikey", "password", "secret", "token")


def _redact(key: str, value: Any) -> Any:
    lowered = key.lower()
    if any(s in lowered for s in _SECRET_KEYS) and not lowered.endswith("_count"):
        return "[redacted]"
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, request_id, msg, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "msg": record.getMessage(),
        }
        caller = caller_var.get()
        if caller is not None:
            payload["tenant"] = caller.tenant
            payload["key_id"] = caller.key_id
        client_request_id = client_request_id_var.get()
        if client_request_id is not None:
            payload["client_request_id"] = client_request_id
        model_version = current_model_version()
        if model_version is not None:
            payload["model_version"] = model_version
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in payload:
                payload[key] = _redact(key, value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = current_request_id()
        base = super().format(record)
        caller = caller_var.get()
        if caller is not None:
            base = f"{base} [tenant={caller.tenant} key={caller.key_id}]"
        return f"{base} [rid={rid}]" if rid else base


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Route the root, uvicorn and service loggers to stdout in one format."""
    handler = logging.StreamHandler(sys.stdout)
    if json_logs:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers[:] = []
        uv.propagate = True
    # The request middleware writes one access line per request, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
