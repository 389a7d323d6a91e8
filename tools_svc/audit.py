"""The audit log of tool calls: one JSON record per call, without the arguments.

Each record names the caller (tenant and API key id; a null key id is the
platform itself), the tool, a keyed digest of the arguments (equal arguments
give equal digests within a run, but the text cannot be recovered or guessed
from it), the outcome, the status, the duration and the request id. Error
messages are left out: they may quote arguments. Records go to the
`tools_svc.audit` logger and, when a path is given, to a JSON-lines file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from common.caller import Caller
from common.request_context import current_request_id

__all__ = ["AuditLog"]

logger = logging.getLogger("tools_svc.audit")


class AuditLog:
    def __init__(self, path: Path | None = None, *, key: bytes | None = None) -> None:
        self.path = path
        # A per-process key: digests cannot be brute-forced from a leaked log.
        self._key = key or secrets.token_bytes(32)
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def digest(self, arguments: Any) -> str:
        canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()[:32]

    def record(
        self,
        *,
        caller: Caller,
        tool: str,
        arguments: Any,
        outcome: str,
        status: int,
        duration_ms: float,
        error_code: str | None = None,
    ) -> dict[str, Any]:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event": "tool_call",
            "tenant": caller.tenant,
            "key_id": caller.key_id,
            "tool": tool,
            "args_digest": self.digest(arguments),
            "outcome": outcome,
            "status": status,
            "error_code": error_code,
            "duration_ms": round(duration_ms, 2),
            "request_id": current_request_id(),
        }
        logger.info("tool call %s: %s", tool, outcome, extra={"audit": entry})
        if self.path is not None:
            line = json.dumps(entry) + "\n"
            with self._lock, self.path.open("a", encoding="utf-8") as f:
                f.write(line)
        return entry
