"""Tool calls: the grammar a reply must follow, and reading the calls out of the reply.

The model writes calls the way SmolLM2's function-calling format has them (the
tools listed in the system turn, see `moe_svc.chat_template`):

    <tool_call>[{"name":"get_weather","arguments":{"city":"Paris"}}]</tool_call>

The grammar fixes that shape (each call's arguments valid against its function's
parameters schema, compact separators, `name` before `arguments`), so reading it
back is a scan of known punctuation. With `tool_choice` "auto" the grammar is a
call or prose that does not open with "<": the model's own first token chooses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "ParsedCall",
    "ToolCallParser",
    "ToolPlan",
    "calls_text",
    "plan_tools",
]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


@dataclass(frozen=True)
class ToolPlan:
    """How one request's reply is constrained: the grammar text, and whether calls are forced."""

    grammar: str
    required: bool


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def plan_tools(
    functions: list[dict[str, Any]], required: bool, parallel: bool, strict: bool = False
) -> ToolPlan:
    """The grammar of a reply to `functions` (OpenAI function objects; at least one)."""
    calls: dict[str, Any] = {
        "type": "array",
        "items": {"anyOf": [_call_schema(f) for f in functions]},
        "minItems": 1,
    }
    if not parallel:
        calls["maxItems"] = 1
    schema = json.dumps({**calls, "x-guidance": {**_JSON_OPTIONS, "lenient": not strict}})
    call = f'"{CALL_OPEN}" calls "{CALL_CLOSE}"'
    start = call if required else f"{call} | PROSE"
    lark = f"start: {start}\nPROSE: /[^<][\\s\\S]*/\ncalls: %json {schema}\n"
    return ToolPlan(json.dumps({"grammars": [{"lark_grammar": lark}]}), required)


def calls_text(calls: list[tuple[str, str]]) -> str:
    """(name, arguments JSON) pairs as the model writes them (earlier assistant turns)."""
    items = ",".join(
        f'{{"name":{json.dumps(name)},"arguments":{args or "{}"}}}' for name, args in calls
    )
    return f"{CALL_OPEN}[{items}]{CALL_CLOSE}"


@dataclass
class ParsedCall:
    """A call read so far: its name once complete, then its arguments as they come."""

    name: str | None = None
    arguments: str = ""
    done: bool = False


@dataclass
class _Scan:
    depth: int = 0  # of the current call's arguments value
    in_string: bool = False
    escaped: bool = False


@dataclass
class ToolCallParser:
    """Reads a reply as it streams: prose, or calls with their argument fragments.

    `feed(text)` returns the fragments the new text completes: `(index, name, args)`
    with `name` set once per call (its opening) and `args` the new argument text.
    """

    text: str = ""
    calls: list[ParsedCall] = field(default_factory=list)
    _pos: int = 0  # chars of `text` consumed
    _scan: _Scan = field(default_factory=_Scan)

    @property
    def is_call(self) -> bool:
        return self.text.startswith(CALL_OPEN)

    @property
    def undecided(self) -> bool:
        """Still a possible start of a call: hold the text back."""
        return CALL_OPEN.startswith(self.text)

    def feed(self, piece: str) -> list[tuple[int, str | None, str]]:
        self.text += piece
        if not self.is_call:
            return []
        if self._pos == 0:
            self._pos = len(CALL_OPEN) + 1  # past "<tool_call>["
        out: list[tuple[int, str | None, str]] = []
        while self._pos < len(self.text):
            call = self.calls[-1] if self.calls and not self.calls[-1].done else None
            if call is None or call.name is None:
                if not self._open_call(out):
                    break
                continue
            start = self._pos
            self._pos = self._arguments_end(call, self._pos)
            fragment = self.text[start : self._pos]
            call.arguments += fragment
            if fragment:
                out.append((len(self.calls) - 1, None, fragment))
            if call.done:
                self._pos += 1  # the call object's closing brace
            elif self._pos >= len(self.text):
                break
        return out

    def _open_call(self, out: list[tuple[int, str | None, str]]) -> bool:
        """Read `{"name":"...","arguments":` (after a "," between calls); False: need more."""
        rest = self.text[self._pos :].lstrip(",")
        prefix = '{"name":'
        end = rest.find(',"arguments":')
        if not rest.startswith(prefix) or end < 0:
            return False
        name = json.loads(rest[len(prefix) : end])
        skipped = len(self.text) - self._pos - len(rest)
        self._pos += skipped + end + len(',"arguments":')
        self.calls.append(ParsedCall(name=name))
        self._scan = _Scan()
        out.append((len(self.calls) - 1, name, ""))
        return True

    def _arguments_end(self, call: ParsedCall, pos: int) -> int:
        """Scan the arguments value from `pos`; where it ends (call.done) or the text does."""
        scan = self._scan
        text = self.text
        while pos < len(text):
            char = text[pos]
            if scan.in_string:
                if scan.escaped:
                    scan.escaped = False
                elif char == "\\":
                    scan.escaped = True
                elif char == '"':
                    scan.in_string = False
            elif char == '"':
                scan.in_string = True
            elif char in "{[":
                scan.depth += 1
            elif char in "}]":
                if scan.depth == 0:  # the call object's brace: the arguments ended
                    call.done = True
                    return pos
                scan.depth -= 1
            pos += 1
        return pos
