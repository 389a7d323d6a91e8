"""The docs say what the code does and point only at files that exist.

- docs/configuration.md's settings tables are what scripts/settings_tables.py
  renders from the settings classes today, and every variable the launcher reads
  is documented;
- every relative link or image of every tracked Markdown file resolves to a
  file of the repository;
- no file cites a design document that is not in the repository, and no
  Markdown file or code comment refers to an issue by number.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from common.topology import SERVICES
from scripts.settings_tables import CONFIGURATION, generated_block, render_tables, settings_class

ROOT = Path(__file__).resolve().parents[3]
# Hosts a URL in the docs may name: the local machine, the compose services, "host".
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "host", "redis", *SERVICES}
SKIPPED_DIRS = {".git", ".venv", "var", "secrets", "node_modules", "build", "dist"}
BINARY_SUFFIXES = {".png", ".jpg", ".gif", ".safetensors", ".bin", ".pt", ".onnx", ".gguf"}

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_ISSUE = re.compile(r"\bissues? #?\d+\b|(?:^|[\s(\[])#\d+\b", re.IGNORECASE)


@cache
def tracked_files() -> tuple[Path, ...]:
    """The repository's files: git's list where there is one, else a walk of the tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [
            p
            for p in ROOT.rglob("*")
            if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts[:-1])
            and "__pycache__" not in str(p)
        ]
    return tuple(sorted(p for p in paths if p.is_file()))


def markdown_files() -> list[Path]:
    return [p for p in tracked_files() if p.suffix == ".md"]


def text_files() -> list[Path]:
    return [
        p
        for p in tracked_files()
        if p.suffix not in BINARY_SUFFIXES and p.stat().st_size < 2_000_000
    ]


def relative_links(text: str) -> list[str]:
    """Targets of the links and images of a Markdown text that point inside the repository."""
    prose = _FENCE.sub("", text)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)
    return [
        t.split("#", 1)[0]
        for t in targets
        if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")
    ]


def broken_links(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}: {target}"
        for target in relative_links(path.read_text())
        if not (path.parent / target).exists()
    ]


def test_settings_tables_match_the_settings_classes() -> None:
    assert generated_block(CONFIGURATION.read_text()) == render_tables(), (
        "docs/configuration.md's settings tables are out of date; run "
        "`.venv/bin/python -m scripts.settings_tables --write`"
    )


def test_every_settings_field_is_listed() -> None:
    block = generated_block(CONFIGURATION.read_text())
    for service in SERVICES:
        for name in settings_class(service).model_fields:
            assert f"| {service} | {name} |" in block or f"| {name} |" in block, (
                f"{service}.{name} missing from docs/configuration.md"
            )


def test_every_variable_the_launcher_reads_is_documented() -> None:
    read: set[str] = set()
    for path in sorted((ROOT / "launcher").glob("*.py")):
        read |= set(re.findall(r"(?:env|environ)\.get\(\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
        read |= set(re.findall(r"_(?:port|float)\(env, \"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    assert {"PLATFORM_HOST", "REDIS_URL"} <= read, read
    documented = CONFIGURATION.read_text()
    assert [name for name in sorted(read) if f"`{name}`" not in documented] == []


def test_the_link_check_finds_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text(
        "[ok](there.md#part) [gone](missing.md) ![img](images/none.png) [web](https://x.org)\n"
        "[anchor](#top)\n```\n[in code](nowhere.md)\n```\n[ref]: also-missing.md\n"
    )
    assert relative_links(page.read_text()) == [
        "there.md",
        "missing.md",
        "images/none.png",
        "also-missing.md",
    ]
    assert [t for t in relative_links(page.read_text()) if not (tmp_path / t).exists()] == [
        "missing.md",
        "images/none.png",
        "also-missing.md",
    ]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_docs_exist_and_the_readme_links_them() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("architecture", "api", "configuration", "benchmarks", "development", "security"):
        assert (ROOT / "docs" / f"{name}.md").is_file()
        assert f"](docs/{name}.md)" in readme, f"README.md does not link docs/{name}.md"


def test_no_file_cites_a_design_document_outside_the_repository() -> None:
    missing = "DESIGN" + ".md"
    assert [str(p.relative_to(ROOT)) for p in text_files() if missing in p.read_text()] == []


def test_no_doc_or_comment_refers_to_an_issue_by_number() -> None:
    found = []
    for path in text_files():
        if path.suffix not in {".md", ".py", ".toml", ".yml", ".txt"} and path.name not in {
            "Makefile",
            "Dockerfile",
        }:
            continue
        text = path.read_text()
        if path.suffix != ".md":  # in code only comments and docstrings name issues, in words
            found += [
                f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"\bissues? \d+\b", text)
            ]
            continue
        found += [
            f"{path.relative_to(ROOT)}: {m.strip()}" for m in _ISSUE.findall(_FENCE.sub("", text))
        ]
    assert found == []


@pytest.mark.parametrize(
    "path",
    [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_docs_name_no_remote_host(path: Path) -> None:
    hosts = set(re.findall(r"[a-z][a-z0-9+.-]*://([^/:\s'\"`)]+)", path.read_text()))
    assert hosts <= LOCAL_HOSTS, sorted(hosts - LOCAL_HOSTS)
