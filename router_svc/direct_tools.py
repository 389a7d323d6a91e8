"""Tool requests the router can serve with one tools_svc call, without a model.

A tool-intent turn whose wording names the call outright (code to run, the
time, a bare arithmetic expression, "convert <number> <unit> to <unit>")
goes straight to that tool: exact, and far faster than an agent loop. Any
other tool request, or a direct call that fails, goes to reasoning_svc's
ReAct agent. `format_tool_answer` turns the tool's output into the reply.

Code runs only when the user's own words, outside the code, ask for it to
be run (`asks_to_run`): "run this", "execute the following", "what does
this code output?". Code shown for anything else (explain, review, fix,
translate, "what does this do?"), or a run request that also asks for
something else, is answered by the model and never runs (`asks_about_code`).
Whether the caller's key may run code at all (the `tools:python` scope) is
the dispatcher's check.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DirectCall",
    "asks_about_code",
    "asks_to_run",
    "detect_direct_call",
    "format_tool_answer",
]

# A fence's language tag counts only on the fence's own line ("```print(1)```" has none).
_FENCED = re.compile(r"```(?:[ \t]*([\w+#.-]+)[ \t]*\n|[ \t]*\n?)(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"", "python", "python3", "py"}
_RUN_INLINE = re.compile(
    r"(?is)^\s*(?:please\s+)?(?:run|execute|exec)\b(?:\s+(?:this|the following|my))?"
    r"(?:\s+(?:python\s+)?(?:code|snippet|script|program|one-liner))?"
    r"(?:\s+for\s+me)?\s*[:\-]?\s*(.+)$"
)
_CODE_HINT = re.compile(r"\bprint\s*\(|\bimport\s+\w|^\s*(?:def|for|while|class)\s|=")
_THIS = r"(?:this|that|it|these|the\s+(?:following\s+)?(?:code|snippet|script|program|lines?))"
_THIS_CODE = (
    rf"{_THIS}(?:\s+(?:python\s+)?(?:code|snippet|script|program|one-liner|lines?))?"
    r"(?:\s+(?:below|above|here))?"
)
# The user asks for the code to be run, or for what running it shows.
_RUN_REQUEST = re.compile(
    r"(?ix)"
    r"(?:^|[.!?;:\n]|\b(?:please|pls|kindly|now|then|and|just|so))\s*(?:run|execute|exec)\b"
    r"|\b(?:can|could|would|will)\s+you\s+(?:please\s+|kindly\s+|just\s+)?(?:run|execute)\b"
    r"|\b(?:want|need|like)\s+you\s+to\s+(?:run|execute)\b"
    r"|\btry\s+(?:running|executing)\b|\bgo\s+ahead\s+and\s+(?:run|execute)\b"
    r"|\blet'?s\s+(?:run|execute)\b"
    rf"|\bwhat\s+(?:does|will|would|did|do|should)\s+{_THIS_CODE}\s+"
    r"(?:print|output|display|produce|write\s+out)\b"
    r"|\bwhat(?:'s|\s+is|\s+are|\s+would\s+be|\s+will\s+be)\s+(?:the\s+)?"
    r"(?:output|outputs|stdout|printed\s+output)\b(?!\s+format)"
    r"|\b(?:show|give|tell)\s+me\s+(?:the\s+|its\s+|what\s+(?:this|it)\s+)?(?:output|prints)\b"
    r"|\bwhat(?:'s|\s+is|\s+gets|\s+will\s+be|\s+would\s+be)\s+printed\b"
    rf"|\bdoes\s+{_THIS_CODE}\s+(?:print|output)\b"
    r"|\bresult\s+of\s+running\b|\boutput\s+(?:when|if)\s+(?:it\s+is\s+|you\s+)?run\b"
)
# ...unless the words around it say otherwise: not to run it, how one would run it,
# or another task (explain, fix, ...) for which running the code is not the answer.
_NOT_RUN = re.compile(
    r"(?ix)"
    r"\b(?:don't|dont|do\s+not|never|not|without|no\s+need\s+to|instead\s+of|rather\s+than"
    r"|before)\s+(?:\w+\s+){0,2}?(?:run|running|execut\w*)\b"
    r"|\bhow\s+(?:do|can|should|would|could|to)\s+(?:\w+\s+){0,3}?(?:run|execute)\b"
    r"|\bi\s+(?:\w+\s+)?(?:ran|run|running|execute|executed)\b"
    r"|\b(?:explain\w*|review\w*|fix\w*|debug\w*|refactor\w*|rewrite|re-write|translat\w*"
    r"|convert\w*|port|document|comment\w*|annotate|summar\w*|tl;?dr|improv\w*|optimi[sz]\w*"
    r"|simplif\w*|correct|modify|change|critique|analy[sz]\w*|describe|understand|meaning)\b"
    rf"|\bwhat\s+(?:does|is|do)\s+{_THIS_CODE}\s+(?:do|doing|does|mean|for)\b"
    r"|\bwhy\b|\bwrong\b|\bbugs?\b"
    r"|\bis\s+(?:this|it|that|there)\b.*\b(?:safe|correct|right|valid|ok|okay|good|secure"
    r"|malicious|efficient)\b"
)
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


def _prose(text: str) -> str:
    """The user's own words: `text` without its fenced code."""
    return _FENCED.sub(" ", text).replace("\u2019", "'")


def asks_to_run(text: str) -> bool:
    """Whether the words outside the code ask for it to be run (and for nothing else)."""
    prose = _prose(text)
    return bool(_RUN_REQUEST.search(prose)) and not _NOT_RUN.search(prose)


def asks_about_code(text: str) -> bool:
    """Whether `text` shows code (a fenced block) that is not to be run: the model answers."""
    return bool(_FENCED.search(text)) and detect_direct_call(text) is None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _python_call(text: str) -> DirectCall | None:
    blocks = [(tag.lower(), code.strip()) for tag, code in _FENCED.findall(text)]
    if blocks:
        runnable = [code for tag, code in blocks if tag in _PYTHON_TAGS and code]
        if runnable and asks_to_run(text):
            return DirectCall("python", {"code": runnable[0]})
        return None
    inline = _RUN_INLINE.match(text)
    if inline is None:
        return None
    code = inline.group(1).strip()
    # Inline code has no fence: it must read as Python, so that words are never run.
    if _CODE_HINT.search(code) and _parses(code) and not _NOT_RUN.search(text[: inline.start(1)]):
        return DirectCall("python", {"code": code})
    return None


def detect_direct_call(text: str) -> DirectCall | None:
    """The one tool call `text` asks for, or None when it takes more than one.

    Code shown without a request to run it is never a call (`asks_about_code`).
    """
    call = _python_call(text)
    if call is not None or _FENCED.search(text):
        return call
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
