"""Structured logs: one JSON object a line, with service and request id, no secrets."""

from __future__ import annotations

import json
import logging

from common.log import JsonFormatter
from common.request_context import request_id_var, sanitize_request_id


def format_record(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("svc.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return dict(json.loads(JsonFormatter("rag_svc").format(record)))


def test_line_carries_service_and_request_id() -> None:
    token = request_id_var.set("rid-9")
    try:
        line = format_record(status=200)
    finally:
        request_id_var.reset(token)
    assert line["service"] == "rag_svc"
    assert line["request_id"] == "rid-9"
    assert line["msg"] == "hello world"
    assert line["status"] == 200
    assert line["level"] == "info"


def test_secrets_in_extras_are_redacted() -> None:
    line = format_record(api_key="sk-live-123", authorization="Bearer x", token_count=12)
    assert line["api_key"] == "[redacted]"
    assert line["authorization"] == "[redacted]"
    assert line["token_count"] == 12


def test_exception_is_logged_with_trace() -> None:
    try:
        raise KeyError("boom")
    except KeyError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter("gateway").format(record))
    assert "KeyError" in line["exc"]


def test_request_ids_are_kept_only_when_safe() -> None:
    assert sanitize_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert sanitize_request_id("bad\nid") != "bad\nid"
    assert sanitize_request_id("x" * 200) != "x" * 200
    assert len(sanitize_request_id(None)) == 32
