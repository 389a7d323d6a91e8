"""Structured generation: grammars that constrain a sequence's tokens (JSON, tool calls)."""

from moe_svc.structured.chat_constraints import (
    ChatConstraint,
    chat_constraint,
    prompt_messages,
    refuse_unsupported,
)
from moe_svc.structured.grammars import GrammarCompiler, GrammarError, GrammarState, json_grammar
from moe_svc.structured.tool_calls import ToolCallParser, calls_text, plan_tools

__all__ = [
    "ChatConstraint",
    "GrammarCompiler",
    "GrammarError",
    "GrammarState",
    "ToolCallParser",
    "calls_text",
    "chat_constraint",
    "json_grammar",
    "plan_tools",
    "prompt_messages",
    "refuse_unsupported",
]
