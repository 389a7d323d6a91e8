"""Refuse request input that would crash a handler: bad paths, deep or invalid JSON.

Every service installs `InputGuardMiddleware` (common/service.py). Before the
app runs, a path or query string that is not UTF-8 once percent-decoded, a
path with a control character (NUL, CR, LF...) and a query with NUL answer
400. A JSON body (or one without a content type, which FastAPI reads as
JSON) is checked when the app reads it, so authentication still comes
before the body is read: not UTF-8, a lone UTF-16 surrogate escape
(`"\\ud800"`, which Python decodes to a string no encoder accepts) or
nesting deeper than `MAX_JSON_DEPTH` raise `MalformedBody` (400) from the
app's own read.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import BadRequest, MalformedBody, error_response
from common.request_context import current_request_id

__all__ = ["MAX_JSON_DEPTH", "InputGuardMiddleware", "check_json_body"]

MAX_JSON_DEPTH = 64

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A string token, closed or running to the end (possessive: linear on any input).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
# A \uD800-\uDFFF escape whose backslash is not itself escaped.
_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD]([0-9a-fA-F])[0-9a-fA-F]{2}")
_BRACKET_STEP = [0] * 256
for _char, _step in ((b"[", 1), (b"{", 1), (b"]", -1), (b"}", -1)):
    _BRACKET_STEP[_char[0]] = _step
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_json_body(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise `MalformedBody` for a JSON text no handler should be given.

    Syntax errors are left to the JSON parser (FastAPI's 400 `invalid_json`).
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(
            f"The JSON body is not valid UTF-8 (byte {exc.start}).", code="invalid_encoding"
        ) from None
    _check_surrogates(body)
    structure = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if structure.count(b"[") + structure.count(b"{") <= max_depth:
        return  # cannot nest deeper than it opens
    if max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, structure))) > max_depth:
        raise MalformedBody(
            f"The JSON body nests deeper than {max_depth} levels.", code="json_too_deep"
        )


def _check_surrogates(body: bytes) -> None:
    if b"\\u" not in body:
        return
    pending_high_end = -1  # where a high surrogate ended, awaiting its low half
    for match in _SURROGATE_ESCAPE.finditer(body):
        is_high = match.group(1) in b"89abAB"
        escape_start = match.end() - 6
        if pending_high_end >= 0 and not is_high and escape_start == pending_high_end:
            pending_high_end = -1  # a pair: one character outside the BMP
        elif pending_high_end >= 0 or not is_high:
            break
        else:
            pending_high_end = match.end()
    else:
        if pending_high_end < 0:
            return
    raise MalformedBody(
        "The JSON body has a lone UTF-16 surrogate escape (\\uD800-\\uDFFF without its pair).",
        code="invalid_encoding",
    )


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media.endswith((b"/json", b"+json"))
    return True  # FastAPI reads a body without a content type as JSON


def _url_problem(scope: Scope) -> str | None:
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
        query = unquote_to_bytes(scope.get("query_string", b"")).decode("utf-8")
    except UnicodeDecodeError:
        return "The URL is not UTF-8 once percent-decoded."
    if _PATH_CONTROL.search(path):
        return "The URL path contains a control character (NUL, CR, LF, ...)."
    if "\x00" in query:
        return "The query string contains a NUL character."
    return None


class _CheckedBody:
    """The app's receive channel; the JSON body is read whole and checked first."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.chunks: list[bytes] = []
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        while True:
            # Kept across calls, so a read cancelled halfway loses nothing.
            message = await self.receive()
            if message["type"] != "http.request":
                return message
            self.chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.done = True
        body = b"".join(self.chunks)
        self.chunks = []
        if body:
            check_json_body(body)
        return {"type": "http.request", "body": body, "more_body": False}


class InputGuardMiddleware:
    """400 for malformed URLs before the app; JSON bodies checked as the app reads them."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _url_problem(scope)
        if problem is not None:
            error = BadRequest(problem, code="invalid_url")
            response = error_response(error.detail(self.service, current_request_id()), 400)
            await response(scope, receive, send)
            return
        if scope["method"] in _BODY_METHODS and _is_json(scope):
            receive = _CheckedBody(receive)
        await self.app(scope, receive, send)
