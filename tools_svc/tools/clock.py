"""`datetime_now`: the current date and time in an IANA time zone."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from common.errors import BadRequest
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["DatetimeNowTool"]


class DatetimeArguments(ToolArguments):
    timezone: str = Field(
        "UTC",
        min_length=1,
        max_length=64,
        description="An IANA time zone such as 'Europe/Paris' or 'America/New_York'.",
    )


class DatetimeNowTool(Tool):
    name = "datetime_now"
    description = "The current date and time (ISO 8601, weekday, UTC offset) in a time zone."
    arguments = DatetimeArguments

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        # Injected in tests, so that known instants give known answers.
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run(self, arguments: Any) -> ToolResult:
        args: DatetimeArguments = arguments
        try:
            zone = zoneinfo.ZoneInfo(args.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise BadRequest(
                f"Unknown time zone {args.timezone!r}; use an IANA name such as 'Europe/Paris'.",
                param="arguments.timezone",
                code="unknown_timezone",
            ) from None
        now = self._clock().astimezone(zone)
        offset = now.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        sign = "-" if minutes < 0 else "+"
        return ToolResult(
            {
                "iso": now.isoformat(timespec="seconds"),
                "timezone": args.timezone,
                "abbreviation": now.tzname(),
                "utc_offset": f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
                "date": now.date().isoformat(),
                "time": now.time().isoformat(timespec="seconds"),
                "weekday": now.strftime("%A"),
                "unix": round(now.timestamp(), 3),
            }
        )
