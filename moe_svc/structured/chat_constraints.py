"""What a chat request asks of its reply's shape: JSON, a schema, tool calls, a grammar,
or free text.

Turns `response_format`, `tools`, `tool_choice`, `parallel_tool_calls` and the
`grammar` extension into the grammar every choice's sequence follows, refusing (400)
what cannot be honoured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from common.contracts.openai import ChatCompletionRequest, ChatMessageIn, NamedToolChoice
from common.errors import BadRequest
from moe_svc.structured.grammars import json_grammar, lark_grammar
from moe_svc.structured.tool_calls import calls_text, plan_tools
from moe_svc.vision.prompt import message_text

__all__ = ["ChatConstraint", "chat_constraint", "prompt_messages", "refuse_unsupported"]


@dataclass(frozen=True)
class ChatConstraint:
    grammar: str | None = None  # None: free text
    tools: list[dict[str, Any]] | None = None  # listed in the prompt
    may_call: bool = False  # the reply may be tool calls (read it as such)
    param: str = "response_format"  # the field a grammar error is about


def refuse_unsupported(body: ChatCompletionRequest) -> None:
    """400 for OpenAI fields this server accepts on the wire but does not implement."""
    unsupported = {
        "logit_bias": bool(body.logit_bias),
        "functions": body.functions is not None,
        "function_call": body.function_call is not None,
        "audio": body.audio is not None,
        "modalities": body.modalities not in (None, ["text"]),
        "prediction": body.prediction is not None,
    }
    for param, present in unsupported.items():
        if present:
            hint = " (use tools and tool_choice)" if param.startswith("function") else ""
            raise BadRequest(f"'{param}' is not supported by this server{hint}.", param=param)
    if body.top_logprobs is not None and not body.logprobs:
        raise BadRequest("top_logprobs needs logprobs set to true.", param="top_logprobs")


def chat_constraint(body: ChatCompletionRequest) -> ChatConstraint:
    """The grammar of this request's replies; a 400 for contradictory or unknown choices."""
    choice = body.tool_choice
    if choice is not None and not body.tools:
        raise BadRequest("tool_choice needs tools.", param="tool_choice")
    if body.grammar is not None:
        return _grammar_constraint(body)
    if body.tools and choice != "none":
        if body.response_format is not None and body.response_format.type != "text":
            raise BadRequest(
                "response_format and tools cannot both constrain the reply; "
                "set tool_choice to 'none' or leave response_format out.",
                param="response_format",
            )
        return _tools_constraint(body, choice)
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return ChatConstraint(tools=tools)
    if fmt.type == "json_object":
        return ChatConstraint(json_grammar({"type": "object"}), tools)
    if fmt.json_schema is None:
        raise BadRequest(
            "response_format json_schema needs its json_schema.", param="response_format"
        )
    spec = fmt.json_schema
    return ChatConstraint(json_grammar(spec.json_schema, lenient=not spec.strict), tools)


def _grammar_constraint(body: ChatCompletionRequest) -> ChatConstraint:
    """The request's own Lark grammar; nothing else may constrain the same reply."""
    assert body.grammar is not None
    if body.tools and body.tool_choice != "none":
        raise BadRequest(
            "grammar and tools cannot both constrain the reply; set tool_choice to 'none' "
            "or leave grammar out.",
            param="grammar",
        )
    if body.response_format is not None and body.response_format.type != "text":
        raise BadRequest(
            "grammar and response_format cannot both constrain the reply; leave one out.",
            param="grammar",
        )
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    return ChatConstraint(lark_grammar(body.grammar.definition), tools, param="grammar")


def _tools_constraint(body: ChatCompletionRequest, choice: Any) -> ChatConstraint:
    assert body.tools is not None
    functions = [t.function.model_dump(exclude_none=True) for t in body.tools]
    if isinstance(choice, NamedToolChoice):
        functions = [f for f in functions if f["name"] == choice.function.name]
        if not functions:
            raise BadRequest(
                f"tool_choice names '{choice.function.name}', which is not among the tools.",
                param="tool_choice",
            )
    required = choice is not None and choice != "auto"
    parallel = body.parallel_tool_calls is not False
    strict = all(f.get("strict") for f in functions)
    plan = plan_tools(functions, required, parallel, strict)
    tools = [t.model_dump(exclude_none=True) for t in body.tools]
    return ChatConstraint(plan.grammar, tools, may_call=True, param="tools")


def prompt_messages(messages: list[ChatMessageIn]) -> list[dict[str, Any]]:
    """The conversation as the template takes it; earlier tool calls in the model's format."""
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message_text(message)  # an image part as IMAGE_MARK (moe_svc.vision)
        if message.role == "assistant" and message.tool_calls:
            calls = [
                (c.function.name, _arguments(c.function.arguments)) for c in message.tool_calls
            ]
            content = (content + "\n" if content else "") + calls_text(calls)
        out.append({"role": message.role, "content": content})
    return out


def _arguments(text: str) -> str:
    """A call's arguments as compact JSON (400 when they are not a JSON object)."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BadRequest("A tool call's arguments must be a JSON object.", param="messages")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
