"""A reply that may hold tool calls, as OpenAI sends it: content, or `tool_calls` deltas.

The model writes calls as text (`moe_svc.structured.tool_calls`); this reads them
back into OpenAI's `tool_calls` (ids `call_...`, arguments as JSON text), whole for
a response and, streamed, as a first delta with id and name per call followed by
fragments of its arguments.
"""

from __future__ import annotations

import uuid

from common.contracts.openai import (
    DeltaFunctionCall,
    DeltaToolCall,
    FunctionCall,
    ToolCall,
)
from moe_svc.structured import ToolCallParser

__all__ = ["ToolReply", "call_id"]


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolReply:
    """One choice's reply, fed its text as it is generated."""

    def __init__(self) -> None:
        self._parser = ToolCallParser()
        self._ids: list[str] = []
        self._released = 0  # chars of prose handed out

    @property
    def is_call(self) -> bool:
        return self._parser.is_call

    def feed(self, piece: str) -> tuple[str, list[DeltaToolCall]]:
        """The new prose, or the new tool-call deltas, that `piece` completes."""
        deltas = []
        for index, name, arguments in self._parser.feed(piece):
            if name is not None:
                self._ids.append(call_id())
                deltas.append(
                    DeltaToolCall(
                        index=index,
                        id=self._ids[index],
                        type="function",
                        function=DeltaFunctionCall(name=name, arguments=""),
                    )
                )
            if arguments:
                deltas.append(
                    DeltaToolCall(index=index, function=DeltaFunctionCall(arguments=arguments))
                )
        return self._prose(final=False), deltas

    def _prose(self, final: bool) -> str:
        parser = self._parser
        if parser.is_call or (parser.undecided and not final):
            return ""
        text = parser.text[self._released :]
        self._released = len(parser.text)
        return text

    def finish(self) -> str:
        """Prose held back because it might have opened a call."""
        return self._prose(final=True)

    def tool_calls(self) -> list[ToolCall]:
        """The complete calls (ids as streamed)."""
        calls = []
        for i, call in enumerate(self._parser.calls):
            if call.done and call.name is not None:
                ident = self._ids[i] if i < len(self._ids) else call_id()
                function = FunctionCall(name=call.name, arguments=call.arguments)
                calls.append(ToolCall(id=ident, function=function))
        return calls
