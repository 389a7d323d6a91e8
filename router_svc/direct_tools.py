"""Tool requests the router can serve with one tools_svc call, without a model.

A tool-intent turn whose wording names the call outright (code to run, the
time, a bare arithmetic expression, "convert <number> <unit> to <unit>")
goes straight to that tool: exact, and far faster than an agent loop. Any
other tool request, or a direct call that fails, goes to reasoning_svc's
ReAct agent. `format_tool_answer` turns the tool's output into the reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["DirectCall", "detect_direct_call", "format_tool_answer"]

_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_RUN_INLINE = re.compile(
    r"(?is)^\s*(?:please\s+)?(?:run|execute|exec)\b(?:\s+(?:this|the following|my))?"
    r"(?:\s+(?:python\s+)?(?:code|snippet|script|program|one-liner))?"
    r"(?:\s+for\s+me)?\s*[:\-]?\s*(.+)$"
)
_CODE_HINT = re.compile(r"\bprint\s*\(|\bimport\s+\w|^\s*(?:def|for|while|class)\s|=")
_TIME = re.compile(
    r"(?i)^\s*(?:what(?:'s| is)\s+(?:the\s+)?(?:current\s+)?(?:time|date)(?:\s+(?:now|today))?"
    r"|what\s+time\s+is\s+it(?:\s+now)?|(?:current|today'?s)\s+(?:time|date)|date\s+today"
    r"|what\s+day\s+is\s+(?:it\s+)?today)\s*(?:in\s+utc)?\s*[?.!]*\s*$"
)
_ARITH_PREFIX = re.compile(
    r"(?i)^\s*(?:please\s+)?(?:calculate|compute|evaluate|work out|what(?:'s| is)|how much is"
    r"|do the math:?)\s+"
)
_EXPRESSION = re.compile(r"^[\d\s.+\-*/^%(),]+$")
_CONVERT = re.compile(
    r"(?i)^\s*(?:please\s+)?convert\s+(-?\d+(?:[.,]\d+)?)\s*([a-z°µ\"' ]+?)\s+(?:to|into|in)"
    r"\s+([a-z°µ\"' ]+?)\s*(?:please)?\s*[?.!]*\s*$"
)
_UNIT_WORDS = {"degrees": "", "degree": ""}


@dataclass(frozen=True)
class DirectCall:
    tool: str
    arguments: dict[str, Any]


def _unit(text: str) -> str:
    words = [w for w in text.strip().split() if w.lower() not in _UNIT_WORDS]
    return " ".join(words)


def detect_direct_call(text: str) -> DirectCall | None:
    """The one tool call `text` asks for, or None when it takes more than one."""
    fenced = _FENCED.search(text)
    if fenced and fenced.group(1).strip():
        return DirectCall("python", {"code": fenced.group(1).strip()})
    inline = _RUN_INLINE.match(text)
    if inline and _CODE_HINT.search(inline.group(1)):
        return DirectCall("python", {"code": inline.group(1).strip()})
    if _TIME.match(text):
        return DirectCall("datetime_now", {"timezone": "UTC"})
    convert = _CONVERT.match(text)
    if convert:
        value = float(convert.group(1).replace(",", "."))
        source, target = _unit(convert.group(2)), _unit(convert.group(3))
        if source and target:
            return DirectCall(
                "unit_convert", {"value": value, "from_unit": source, "to_unit": target}
            )
    expression = _ARITH_PREFIX.sub("", text).strip().rstrip("?.!= ").strip()
    if expression and _EXPRESSION.match(expression) and re.search(r"\d\s*[-+*/^%]", expression):
        return DirectCall("calculator", {"expression": expression.replace(",", "")})
    return None


def format_tool_answer(call: DirectCall, output: Any) -> str:
    """The reply a user reads for a direct call's output."""
    if call.tool == "python" and isinstance(output, dict):
        stdout = str(output.get("stdout") or "").rstrip()
        stderr = str(output.get("stderr") or "").rstrip()
        parts = [f"Output:\n```\n{stdout}\n```" if stdout else "The code printed nothing."]
        if stderr:
            parts.append(f"Errors:\n```\n{stderr}\n```")
        if output.get("exit_code") not in (0, None):
            parts.append(f"Exit status: {output.get('exit_code')}.")
        return "\n\n".join(parts)
    if call.tool == "calculator" and isinstance(output, dict):
        approx = "" if output.get("exact", True) else " (approximately)"
        return f"{output.get('expression')} = {output.get('result')}{approx}"
    if call.tool == "unit_convert" and isinstance(output, dict):
        return (
            f"{output.get('value'):g} {output.get('from_unit')} = "
            f"{output.get('result_text')} {output.get('to_unit')}"
        )
    if call.tool == "datetime_now" and isinstance(output, dict):
        return (
            f"It is {output.get('time')} on {output.get('weekday')}, {output.get('date')} "
            f"({output.get('timezone')}, UTC{output.get('utc_offset')})."
        )
    return json.dumps(output, ensure_ascii=False, default=str)
