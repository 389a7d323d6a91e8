"""One ReAct turn of the model, read from free text or from JSON written under a schema.

Free text ("Thought: / Action: / Action Input: / Final Answer:") is what any chat
model can be asked for, and is parsed with repairs for what a small model gets
wrong. The constrained form asks the server to decode the turn under a JSON
schema (`step_format`): an `anyOf` of one object per offered tool, whose
`action` is that tool's name and whose `action_input` is that tool's own
parameters schema, and one object with a `final_answer`. moe_svc enforces it
with its grammar engine; a server that ignores `response_format` still gets the
same JSON examples in its prompt, and whatever it writes that is not such an
object is read as free text instead (`read_json_step` returns None).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common.contracts.tools import ToolSpec

__all__ = [
    "ANSWER_CHARS",
    "ARGUMENT_CHARS",
    "THOUGHT_CHARS",
    "ReactStep",
    "final_format",
    "parse_arguments",
    "parse_step",
    "read_json_step",
    "step_format",
]

_FINAL = re.compile(r"(?i)final\s+answer\s*:")
_ACTION = re.compile(r"(?im)^\s*action\s*:\s*(.*?)\s*$")
_INPUT = re.compile(r"(?i)action\s+input\s*:")
_THOUGHT = re.compile(r"(?is)^\s*(?:thought\s*:)?\s*(.*?)(?=\b(?:action|final\s+answer)\s*:|\Z)")

# Bounds on the strings of a constrained turn, so that a reply cannot run away: the
# longest one (a thought, a 600-character program) stays well inside the default
# max_tokens of 384 (about 3 characters a token for code and JSON).
THOUGHT_CHARS = 160
ANSWER_CHARS = 200
ARGUMENT_CHARS = 600


@dataclass(frozen=True)
class ReactStep:
    thought: str
    action: str | None = None
    action_input: str = ""
    final_answer: str | None = None


def parse_step(text: str) -> ReactStep:
    """Read one model turn; whichever of an action and a final answer comes first counts."""
    thought_match = _THOUGHT.match(text)
    thought = thought_match.group(1).strip() if thought_match else ""
    final = _FINAL.search(text)
    action = _ACTION.search(text)
    if final and (action is None or final.start() < action.start()):
        answer = text[final.end() :].strip()
        return ReactStep(thought, final_answer=answer.splitlines()[0].strip() if answer else "")
    if action is None:
        return ReactStep(thought or text.strip())
    name = action.group(1).strip().strip("`'\"[]")
    rest = text[action.end() :]
    found = _INPUT.search(rest)
    action_input = rest[found.end() :].strip() if found else ""
    return ReactStep(thought, action=name, action_input=action_input)


def parse_arguments(raw: str, spec: ToolSpec) -> dict[str, Any]:
    """The JSON object in `raw`; a bare value goes to a tool's only (or only required) argument.

    Raises ValueError with a message meant for the model.
    """
    text = raw.strip().strip("`").strip()
    if text.startswith("json"):
        text = text[4:].strip()
    params = spec.function.parameters
    properties = list(params.get("properties", {}))
    start = text.find("{")
    if start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            # Often unclosed because the model ran on into the result it expects: keep the
            # string arguments that are complete.
            value = {
                name: match.group(1)
                for name in properties
                if (match := re.search(rf'"{re.escape(name)}"\s*:\s*"((?:[^"\\]|\\.)*)"', text))
            } or None
        if isinstance(value, dict):
            # A small model writes the observation it expects ("result": ...) into its input;
            # keys the tool does not take are dropped rather than refused.
            return {k: v for k, v in value.items() if k in properties} if properties else value
    required = list(params.get("required", []))
    target = required[0] if len(required) == 1 else properties[0] if len(properties) == 1 else None
    if target is None or not text:
        keys = ", ".join(f'"{p}"' for p in properties)
        raise ValueError(f"Action Input must be a JSON object with the keys {keys}.")
    bare = text.splitlines()[0].strip() if target != "code" else text
    return {target: bare.strip("'\"") if target != "code" else bare}


def _bounded(schema: Any) -> Any:
    """`schema` with every string at most ARGUMENT_CHARS long (tools allow up to 100,000)."""
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bounded(value) for key, value in schema.items()}
    if bounded.get("type") == "string":
        bounded["maxLength"] = min(int(bounded.get("maxLength", ARGUMENT_CHARS)), ARGUMENT_CHARS)
    return bounded


def _arguments_schema(spec: ToolSpec) -> dict[str, Any]:
    schema = _bounded(spec.function.parameters)
    return {"type": "object", "additionalProperties": False, **schema}


def _string(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_chars}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    # Properties come out in this order: the thought first, then the action or the answer.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def step_format(specs: list[ToolSpec]) -> dict[str, Any]:
    """The `response_format` of one acting turn: a call of one offered tool, or the answer."""
    thought = _string(THOUGHT_CHARS)
    choices = [
        _object(
            {
                "thought": thought,
                "action": {"const": spec.function.name},
                "action_input": _arguments_schema(spec),
            }
        )
        for spec in specs
    ]
    choices.append(_object({"thought": thought, "final_answer": _string(ANSWER_CHARS)}))
    return _json_schema("react_step", {"anyOf": choices})


def final_format() -> dict[str, Any]:
    """The `response_format` of the forced answer at the step limit."""
    return _json_schema("react_final", _object({"final_answer": _string(ANSWER_CHARS)}))


def _json_schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def read_json_step(text: str) -> ReactStep | None:
    """The turn in the first JSON object of `text`, or None when there is no such turn."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    thought = str(value.get("thought") or "").strip()
    if "final_answer" in value:
        answer = value["final_answer"]
        return ReactStep(thought, final_answer="" if answer is None else str(answer).strip())
    action, arguments = value.get("action"), value.get("action_input")
    if not isinstance(action, str) or not action.strip() or arguments is None:
        return None
    written = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ReactStep(thought, action=action.strip(), action_input=written)
