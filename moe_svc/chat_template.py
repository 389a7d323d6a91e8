"""The model's chat template (Jinja), rendered as transformers renders it.

Tools: a template that handles them (it mentions `tools`) gets them as transformers
passes them, the `tools` variable. Others, SmolLM2's among them, get them the way
SmolLM2's function-calling data presents them: listed in the system turn, with the
`<tool_call>[...]</tool_call>` format the reply must use (`moe_svc.structured`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["DEFAULT_TEMPLATE", "TOOLS_PREAMBLE", "ChatTemplate"]

# ChatML, for model directories that carry no template
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# SmolLM2's function-calling system prompt (its model card), in front of any system text
TOOLS_PREAMBLE = (
    "You are an expert in composing functions. You are given a question and a set of "
    "possible functions. Based on the question, you will need to make one or more "
    "function/tool calls to achieve the purpose. If none of the functions can be used, "
    "answer the question in plain text.\n\n"
    "You have access to the following tools:\n<tools>{tools}</tools>\n\n"
    "To call functions, the output MUST strictly adhere to the following format, and NO "
    "other text MUST be included:\n"
    '<tool_call>[{{"name":"func_name1","arguments":{{"argument1":"value1"}}}}]</tool_call>'
)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    """Renders a conversation into the prompt text the model was trained on."""

    def __init__(self, source: str, special_tokens: dict[str, str] | None = None) -> None:
        # the same sandbox and options as transformers' apply_chat_template
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent)
        env.globals["raise_exception"] = _raise_exception
        self.source = source
        self._template = env.from_string(source)
        self._special = special_tokens or {}

    @classmethod
    def from_model_dir(cls, path: Path) -> ChatTemplate:
        config: dict[str, Any] = {}
        if (path / "tokenizer_config.json").exists():
            config = json.loads((path / "tokenizer_config.json").read_text())
        special = {
            k: v
            for k in ("bos_token", "eos_token", "pad_token", "unk_token")
            if isinstance(v := config.get(k), str)
        }
        if (path / "chat_template.jinja").exists():
            return cls((path / "chat_template.jinja").read_text(), special)
        source = config.get("chat_template")
        return cls(source if isinstance(source, str) else DEFAULT_TEMPLATE, special)

    @property
    def handles_tools(self) -> bool:
        return "tools" in self.source

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Prompt text; raises ValueError when the template refuses the conversation.

        tools: OpenAI tool objects (`{"type": "function", "function": {...}}`).
        """
        messages = list(messages)
        if tools and not self.handles_tools:
            messages = _with_tools_listed(messages, tools)
        extra = {"tools": tools} if tools and self.handles_tools else {}
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                **extra,
                **self._special,
            )
        except TemplateError as exc:
            raise ValueError(str(exc)) from exc


def _with_tools_listed(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The conversation with the tools' preamble as (the start of) its system turn."""
    listed = json.dumps([t["function"] for t in tools], ensure_ascii=False)
    preamble = TOOLS_PREAMBLE.format(tools=listed)
    if messages and messages[0]["role"] in ("system", "developer"):
        first = messages[0]
        return [{**first, "content": f"{preamble}\n\n{first['content']}"}, *messages[1:]]
    return [{"role": "system", "content": preamble}, *messages]
