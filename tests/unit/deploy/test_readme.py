"""README.md is a short start that links out: the two commands, a first request, the docs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def test_readme_is_short() -> None:
    assert len(README) <= 8_000, f"README.md has {len(README)} characters; move detail to docs/"


def test_readme_shows_the_two_commands_and_a_first_request() -> None:
    for needle in ("make up", "make test", "curl ", "/v1/chat/completions", "from openai import"):
        assert needle in README, f"README.md lacks {needle!r}"


def test_readme_shows_the_ui() -> None:
    assert "](docs/images/chat-ui.png)" in README


def test_readme_says_nothing_is_arriving() -> None:
    assert "arriving" not in README.lower()
