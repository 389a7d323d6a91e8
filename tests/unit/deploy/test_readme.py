"""README.md's settings tables are generated from the settings classes and stay in sync.

Regenerate them after changing a settings field (from the repo root):

    .venv/bin/python -m tests.unit.deploy.test_readme --write
"""

from __future__ import annotations

import importlib
import re
import sys
import typing
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from common.settings import ServiceSettings
from common.topology import SERVICES

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
START, END = "<!-- settings-tables:start -->", "<!-- settings-tables:end -->"
# Used only where a field has no description of its own.
FALLBACK_DESCRIPTIONS = {
    "retry_base_backoff_s": "First retry delay; doubles per retry.",
    "retry_max_backoff_s": "Longest retry delay.",
}
# Hosts a URL in the README may name: the local machine, the compose services, "host".
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "host", "redis", *SERVICES}


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


def env_vars(cls: type[ServiceSettings], name: str, prefix: str) -> str:
    choices = getattr(cls.model_fields[name].validation_alias, "choices", None)
    names = [c.upper() for c in choices if isinstance(c, str)] if choices else []
    names = list(dict.fromkeys(names or [f"{prefix}{name}".upper()]))
    return ", ".join(f"`{n}`" for n in names)


def default(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined:
        return "per service"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def description(name: str, field: FieldInfo) -> str:
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
    """The markdown that README.md holds between the settings-tables markers."""
    lines = [
        "Every service reads these, each with its own prefix (`GATEWAY_`, `ROUTER_`, `MOE_`,",
        "`RAG_`, `TOOLS_`, `MEMORY_`, `CREATIVE_`, `REASONING_`): `RAG_LOG_LEVEL=DEBUG`.",
        "",
        "| setting | env var | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in ServiceSettings.model_fields.items():
        env = env_vars(ServiceSettings, name, "<PREFIX>")
        lines.append(f"| {name} | {env} | {default(field)} | {description(name, field)} |")
    lines += [
        "",
        "Per service: its port and the URL of each service it calls.",
        "",
        "| service | setting | env var | default | description |",
        "|---|---|---|---|---|",
    ]
    for service, spec in SERVICES.items():
        cls = settings_class(service)
        for name, field in cls.model_fields.items():
            if name != "port" and name in ServiceSettings.model_fields:
                continue
            env = env_vars(cls, name, spec.env_prefix)
            row = f"| {service} | {name} | {env} | {default(field)} | {description(name, field)} |"
            lines.append(row)
    return "\n".join(lines)


def block_span(text: str) -> tuple[int, int]:
    """Where the generated tables sit in README.md's text (between the markers)."""
    match = re.search(re.escape(START) + r"\n(.*?)\n?" + re.escape(END), text, re.DOTALL)
    assert match, f"README.md lacks the {START} ... {END} markers"
    return match.span(1)


def readme_block(text: str) -> str:
    start, end = block_span(text)
    return text[start:end]


def test_readme_settings_tables_match_the_settings_classes() -> None:
    assert readme_block(README.read_text()) == render_tables(), (
        "README.md's settings tables are out of date; run "
        "`.venv/bin/python -m tests.unit.deploy.test_readme --write`"
    )


def test_readme_lists_every_settings_field() -> None:
    block = readme_block(README.read_text())
    for service in SERVICES:
        for name in settings_class(service).model_fields:
            assert f"| {name} |" in block, f"{service}.{name} missing from README.md"


def test_readme_names_no_remote_host() -> None:
    hosts = re.findall(r"[a-z][a-z0-9+.-]*://([^/:\s'\"`)]+)", README.read_text())
    assert hosts, "README.md shows no example URL"
    assert set(hosts) <= LOCAL_HOSTS, sorted(set(hosts) - LOCAL_HOSTS)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = README.read_text()
        start, end = block_span(text)
        tables = render_tables() + ("" if text[end] == "\n" else "\n")
        README.write_text(text[:start] + tables + text[end:])
    else:
        print(render_tables())
