"""Test doubles of reasoning_svc's unit tests: a scripted chat model and in-process tools."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

from common.contracts.tools import ToolFunction, ToolSpec
from reasoning_svc.llm import Completion, Message
from reasoning_svc.run import Params, Run
from reasoning_svc.tools_client import Observation

__all__ = ["FakeTools", "ScriptedModel", "make_run"]

Reply = str | Callable[[list[Message]], str]


class ScriptedModel:
    """Replies from a script: rules `(text in the last message, reply or replies)`, else a queue.

    A rule with a list of replies gives them in turn (the last one repeats).
    Every call is recorded with its messages, temperature, stop and response_format.
    """

    name = "scripted"

    def __init__(
        self, queue: list[Reply] | None = None, rules: list[tuple[str, Any]] | None = None
    ) -> None:
        self.queue = list(queue or [])
        self.rules = list(rules or [])
        self._turns: dict[int, int] = {}
        self.calls: list[dict[str, Any]] = []

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Completion:
        self.calls.append(
            {
                "messages": messages,
                "temperature": temperature,
                "stop": stop,
                "response_format": response_format,
                "grammar": grammar,
            }
        )
        prompt = messages[-1]["content"]
        reply: Reply | None = None
        for number, (needle, replies) in enumerate(self.rules):
            if needle in prompt or needle in messages[0]["content"]:
                if isinstance(replies, list):
                    turn = self._turns.get(number, 0)
                    self._turns[number] = turn + 1
                    reply = replies[min(turn, len(replies) - 1)]
                else:
                    reply = replies
                break
        if reply is None:
            if not self.queue:
                raise AssertionError(f"the script has no reply for: {prompt[:200]!r}")
            reply = self.queue.pop(0)
        text = reply(messages) if callable(reply) else reply
        return Completion(text, prompt_tokens=10, completion_tokens=5)


def _spec(name: str, description: str, properties: dict[str, Any]) -> ToolSpec:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return ToolSpec(function=ToolFunction(name=name, description=description, parameters=schema))


class FakeTools:
    """`calculator` (Python arithmetic on digits), `python` (exec, stdout captured), `broken`."""

    def __init__(self) -> None:
        self.invocations: list[tuple[str, dict[str, Any]]] = []

    async def specs(self) -> list[ToolSpec]:
        return [
            _spec("calculator", "Exact arithmetic.", {"expression": {"type": "string"}}),
            _spec("python", "Run Python.", {"code": {"type": "string"}}),
            _spec("broken", "Always fails.", {"x": {"type": "string"}}),
        ]

    async def invoke(self, tool: str, arguments: dict[str, Any]) -> Observation:
        self.invocations.append((tool, arguments))
        if tool == "calculator":
            expression = str(arguments.get("expression", ""))
            if not expression or set(expression) - set("0123456789+-*/(). "):
                return Observation(tool, arguments, None, "Cannot evaluate the expression", 1.0)
            return Observation(tool, arguments, {"result": str(eval(expression))}, None, 1.0)
        if tool == "python":
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(str(arguments["code"]), {})
            except Exception as exc:
                output = {"stdout": out.getvalue(), "stderr": repr(exc), "exit_code": 1}
                return Observation(tool, arguments, output, "exited with status 1", 1.0)
            output = {"stdout": out.getvalue(), "stderr": "", "exit_code": 0}
            return Observation(tool, arguments, output, None, 1.0)
        if tool == "broken":
            return Observation(tool, arguments, None, "the tool crashed", 1.0)
        return Observation(tool, arguments, None, f"Unknown tool {tool!r}", 1.0)


def make_run(model: ScriptedModel, tool_runner: FakeTools | None = None, **params: Any) -> Run:
    return Run(model=model, tools=tool_runner, params=Params(**params))
