"""The model's chat template (Jinja), rendered as transformers renders it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["DEFAULT_TEMPLATE", "ChatTemplate"]

# ChatML, for model directories that carry no template
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
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

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Prompt text; raises ValueError when the template refuses the conversation."""
        try:
            return self._template.render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                **self._special,
            )
        except TemplateError as exc:
            raise ValueError(str(exc)) from exc
