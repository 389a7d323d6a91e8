"""The eight expert domains; domain i initialises and trains expert i."""

from __future__ import annotations

__all__ = ["DOMAINS", "EXPERT_OF"]

# order = expert index in every layer
DOMAINS: tuple[str, ...] = (
    "mathematics",
    "code",
    "science",
    "creative",
    "history",
    "languages",
    "common_sense",
    "general",
)

EXPERT_OF: dict[str, int] = {name: i for i, name in enumerate(DOMAINS)}
