"""The settings tables of docs/configuration.md, generated from the settings classes.

Every service reads a `ServiceSettings` subclass (`common/settings.py`,
`<service>/settings.py`); this renders their fields, environment variables,
defaults and descriptions as markdown tables. tests/unit/deploy/test_docs.py
fails when docs/configuration.md drifts from the code. After changing a
settings field, from the repo root:

    .venv/bin/python -m scripts.settings_tables --write    # rewrite the tables in place
    .venv/bin/python -m scripts.settings_tables            # print them
"""

from __future__ import annotations

import argparse
import importlib
import re
import typing
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from common.settings import ServiceSettings
from common.topology import SERVICES

__all__ = ["CONFIGURATION", "generated_block", "render_tables", "settings_class", "write"]

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = ROOT / "docs" / "configuration.md"
START, END = "<!-- settings-tables:start -->", "<!-- settings-tables:end -->"
# Used only where a field has no description of its own.
FALLBACK_DESCRIPTIONS = {
    "retry_base_backoff_s": "First retry delay; doubles per retry.",
    "retry_max_backoff_s": "Longest retry delay.",
}


def settings_class(service: str) -> type[ServiceSettings]:
    """The ServiceSettings subclass that `<service>.settings` defines for `service`."""
    module = importlib.import_module(f"{service}.settings")
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, ServiceSettings)
            and getattr(value, "service_name", None) == service
        ):
            return value
    raise LookupError(f"{service}.settings defines no ServiceSettings subclass for {service}")


def _env_vars(cls: type[ServiceSettings], name: str, prefix: str) -> str:
    choices = getattr(cls.model_fields[name].validation_alias, "choices", None)
    names = [c.upper() for c in choices if isinstance(c, str)] if choices else []
    names = list(dict.fromkeys(names or [f"{prefix}{name}".upper()]))
    return ", ".join(f"`{n}`" for n in names)


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "per service"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _description(name: str, field: FieldInfo) -> str:
    if field.description:
        return field.description
    base = ServiceSettings.model_fields.get(name)
    if base is not None and base.description:
        return base.description
    if typing.get_origin(field.annotation) is typing.Literal:
        return "One of " + ", ".join(map(str, typing.get_args(field.annotation))) + "."
    stem = name.removesuffix("_url")
    for spec in SERVICES.values():
        if name.endswith("_url") and spec.short == stem:
            return f"Base URL of {spec.name}."
    return FALLBACK_DESCRIPTIONS.get(name, "")


def render_tables() -> str:
    """The markdown that docs/configuration.md holds between the settings-tables markers."""
    lines = [
        "Every service reads these, each with its own prefix (`GATEWAY_`, `ROUTER_`, `MOE_`,",
        "`RAG_`, `TOOLS_`, `MEMORY_`, `CREATIVE_`, `REASONING_`): `RAG_LOG_LEVEL=DEBUG`.",
        "",
        "| setting | env var | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in ServiceSettings.model_fields.items():
        env = _env_vars(ServiceSettings, name, "<PREFIX>")
        lines.append(f"| {name} | {env} | {_default(field)} | {_description(name, field)} |")
    lines += [
        "",
        "Per service: its port, the URL of each service it calls, and its own settings.",
        "",
        "| service | setting | env var | default | description |",
        "|---|---|---|---|---|",
    ]
    for service, spec in SERVICES.items():
        cls = settings_class(service)
        for name, field in cls.model_fields.items():
            if name != "port" and name in ServiceSettings.model_fields:
                continue
            env = _env_vars(cls, name, spec.env_prefix)
            row = (
                f"| {service} | {name} | {env} | {_default(field)} | {_description(name, field)} |"
            )
            lines.append(row)
    return "\n".join(lines)


def _block_span(text: str) -> tuple[int, int]:
    match = re.search(re.escape(START) + r"\n(.*?)\n?" + re.escape(END), text, re.DOTALL)
    if match is None:
        raise ValueError(f"{CONFIGURATION.name} lacks the {START} ... {END} markers")
    return match.span(1)


def generated_block(text: str) -> str:
    """The part of `text` (docs/configuration.md) between the settings-tables markers."""
    start, end = _block_span(text)
    return text[start:end]


def write(path: Path = CONFIGURATION) -> None:
    """Replace the tables between the markers of `path` with freshly rendered ones."""
    text = path.read_text()
    start, end = _block_span(text)
    tables = render_tables() + ("" if text[end] == "\n" else "\n")
    path.write_text(text[:start] + tables + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {CONFIGURATION.name}")
    if parser.parse_args().write:
        write()
    else:
        print(render_tables())


if __name__ == "__main__":
    main()
