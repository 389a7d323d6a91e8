"""The core model's choices put together from its stream, as its non-streamed answer has them.

Each chunk holds pieces of some choices (OpenAI's `chat.completion.chunk`):
text, tool calls whose arguments come in pieces (by the call's `index`),
logprobs of the tokens sent, and the choice's `finish_reason` at its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.contracts.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatMessage,
    ChoiceLogprobs,
    FinishReason,
    FunctionCall,
    TokenLogprob,
    ToolCall,
)

__all__ = ["StreamedChoices"]


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None


class StreamedChoices:
    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}

    def add(self, piece: ChatChunkChoice) -> None:
        choice = self._choices.setdefault(piece.index, _Choice())
        if piece.delta.content:
            choice.text.append(piece.delta.content)
        for delta in piece.delta.tool_calls or []:
            call = choice.calls.setdefault(delta.index, _Call())
            call.id = delta.id or call.id
            call.name = delta.function.name or call.name
            if delta.function.arguments:
                call.arguments.append(delta.function.arguments)
        if piece.logprobs is not None and piece.logprobs.content is not None:
            choice.logprobs = [*(choice.logprobs or []), *piece.logprobs.content]
        choice.finish_reason = piece.finish_reason or choice.finish_reason

    def choices(self) -> list[ChatChoice]:
        """Every choice seen, by index (one empty choice for a stream that held none)."""
        if not self._choices:
            self._choices[0] = _Choice()
        return [self._choice(index, self._choices[index]) for index in sorted(self._choices)]

    def _choice(self, index: int, choice: _Choice) -> ChatChoice:
        calls = [
            ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments="".join(c.arguments)))
            for _, c in sorted(choice.calls.items())
        ]
        logprobs = None if choice.logprobs is None else ChoiceLogprobs(content=choice.logprobs)
        return ChatChoice(
            index=index,
            message=ChatMessage(
                content="".join(choice.text) or (None if calls else ""), tool_calls=calls or None
            ),
            finish_reason=choice.finish_reason or "stop",
            logprobs=logprobs,
        )
