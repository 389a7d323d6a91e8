"""check_json_body: which JSON texts are refused before a handler sees them."""

from __future__ import annotations

import json

import pytest

from common.errors import MalformedBody
from common.input_guard import check_json_body


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\ud83d\\ude00"}',  # a surrogate pair: one emoji
        b'{"a": "\\\\ud800"}',  # an escaped backslash, then plain text "ud800"
        b'{"a": "[[[[", "b": "\\"{{{{"}',  # brackets inside strings do not nest
        json.dumps({"a": [[[1]]] * 1000}).encode(),  # many brackets, shallow
        b"[" * 64 + b"]" * 64,
        '{"a": "é ✓ 😀"}'.encode(),
        b'{"a": "unterminated \\',  # a syntax error: left to the JSON parser
    ],
)
def test_sound_json_passes(body: bytes) -> None:
    check_json_body(body)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 65 + b"]" * 65, "json_too_deep"),
        (b'{"a": ' + b"[" * 100_000, "json_too_deep"),
        (b'{"a": "\\ud800"}', "invalid_encoding"),
        (b'{"a": "\\uDC00"}', "invalid_encoding"),
        (b'{"a": "\\ud83d x \\ude00"}', "invalid_encoding"),
        (b'{"a": "\\\\\\ud800"}', "invalid_encoding"),  # an escaped backslash, then a real escape
        (b'{"a": "\xed\xa0\x80"}', "invalid_encoding"),
        (b'{"a": "\xff"}', "invalid_encoding"),
    ],
)
def test_unsafe_json_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(MalformedBody) as raised:
        check_json_body(body)
    assert raised.value.code == code
    assert raised.value.status_code == 400
