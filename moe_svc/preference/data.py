"""Reading a feedback export (JSON lines, KTO or DPO) into checked training examples.

The lines are what `GET /v1/feedback/export?format=kto|dpo` streams: the
`KtoExample` and `DpoPair` models of `common.contracts.memory`, TRL's
conversational formats. A bad line is refused with its number, not skipped: a
training set is small, and a silently shorter one trains a different model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from common.contracts.memory import DpoPair, FeedbackTurn, KtoExample

__all__ = ["Method", "PreferenceData", "PreferenceDataError", "read_examples"]

Method = Literal["kto", "dpo"]

_MODELS: dict[Method, type[BaseModel]] = {"kto": KtoExample, "dpo": DpoPair}


class PreferenceDataError(ValueError):
    """The data file cannot be trained on; the message names the file and line."""


@dataclass(frozen=True)
class PreferenceData:
    path: Path
    sha256: str  # of the file's bytes
    examples: list[dict[str, Any]]  # TRL's conversational rows, plain JSON values


def _check_turns(turns: list[FeedbackTurn], field: str, last_role: str) -> str | None:
    if not turns:
        return f"'{field}' is empty"
    if turns[-1].role != last_role:
        return f"'{field}' must end with a {last_role} turn, not {turns[-1].role!r}"
    if not turns[-1].content.strip():
        return f"'{field}' ends with an empty {last_role} turn"
    return None


def _problem(example: BaseModel) -> str | None:
    """What makes a well-typed example untrainable, or None."""
    if isinstance(example, KtoExample):
        return _check_turns(example.prompt, "prompt", "user") or _check_turns(
            example.completion, "completion", "assistant"
        )
    assert isinstance(example, DpoPair)
    return (
        _check_turns(example.prompt, "prompt", "user")
        or _check_turns(example.chosen, "chosen", "assistant")
        or _check_turns(example.rejected, "rejected", "assistant")
    )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the line"
    return f"{where}: {first['msg']}"


def read_examples(path: Path, method: Method) -> PreferenceData:
    """Every line of `path` as a `method` example; PreferenceDataError on the first bad one."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PreferenceDataError(f"{path}: cannot read: {e.strerror}") from e
    model = _MODELS[method]
    other: Method = "dpo" if method == "kto" else "kto"
    examples: list[dict[str, Any]] = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise PreferenceDataError(f"{path}:{number}: not JSON: {e.msg}") from e
        try:
            example = model.model_validate(value)
        except ValidationError as e:
            hint = ""
            if isinstance(value, dict) and _MODELS[other].model_fields.keys() <= value.keys():
                hint = f" (a {other} line: is this a --method {other} file?)"
            raise PreferenceDataError(
                f"{path}:{number}: not a {method} example: {_describe(e)}{hint}"
            ) from e
        if (problem := _problem(example)) is not None:
            raise PreferenceDataError(f"{path}:{number}: {problem}")
        examples.append(example.model_dump(mode="json"))
    if not examples:
        raise PreferenceDataError(f"{path}: no examples (an empty export?)")
    return PreferenceData(path=path, sha256=hashlib.sha256(raw).hexdigest(), examples=examples)
