"""Context assembly against in-memory fakes of history, summaries and memories."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, cast

import pytest

from common.contracts.memory import (
    ContextRequest,
    ContextResponse,
    ContextSummary,
    MemorySearchResult,
    Message,
    SessionInfo,
)
from common.errors import BadRequest, NotFound, ServiceUnavailable
from memory_svc.context import ContextAssembler, ContextLimits
from memory_svc.summary import SummaryUnavailable
from memory_svc.tokens import GENERATION_PROMPT, render_message
from tests.helpers.memory_messages import stored_message

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


class WordCounter:
    """One token per whitespace-separated piece: deterministic and easy to reason about."""

    source = "fake"

    async def count(self, text: str) -> int:
        return self.count_sync(text)

    def count_sync(self, text: str) -> int:
        return len(re.findall(r"\S+", text))


COUNTER = WordCounter()


class FakeHistory:
    def __init__(self, messages: list[Message], user_id: str | None = None) -> None:
        self.messages = messages
        self.user_id = user_id

    async def info(self, sid: str) -> SessionInfo:
        if not self.messages:
            raise NotFound("no session")
        return SessionInfo(
            id=sid,
            user_id=self.user_id,
            created_at=0,
            updated_at=0,
            message_count=len(self.messages),
            ttl_s=0,
        )

    async def system_seqs(self, sid: str) -> list[int]:
        return [m.seq for m in self.messages if m.role == "system"]

    async def by_seqs(self, sid: str, seqs: Sequence[int]) -> list[Message]:
        return [self.messages[s - 1] for s in seqs]

    async def range(self, sid: str, first: int, last: int) -> list[Message]:
        return self.messages[first - 1 : last]


class FakeSummaries:
    def __init__(self, *, up: bool = True) -> None:
        self.up = up
        self.cached: ContextSummary | None = None
        self.refreshes = 0

    async def get(self, sid: str) -> ContextSummary | None:
        return self.cached.model_copy(update={"status": "cached"}) if self.cached else None

    async def refresh(
        self,
        sid: str,
        previous: ContextSummary | None,
        messages: Sequence[Message],
        max_tokens: int,
        wait_s: float,
    ) -> ContextSummary:
        if not self.up:
            raise SummaryUnavailable("moe_svc is down")
        self.refreshes += 1
        words = " ".join(["summary", *(m.content.split()[0] for m in messages)][:max_tokens])
        self.cached = ContextSummary(
            text=words, upto_seq=messages[-1].seq, status="refreshed", model="fake"
        )
        return self.cached


class FakeMemories:
    def __init__(self, facts: list[str] | None = None, *, up: bool = True) -> None:
        self.facts = facts or []
        self.up = up

    async def search(
        self, uid: str, query: str, k: int, min_score: float | None
    ) -> list[MemorySearchResult]:
        if not self.up:
            raise ServiceUnavailable("rag_svc is down", code="embeddings_unavailable")
        return [
            MemorySearchResult(
                id=f"m{i}", user_id=uid, text=t, created_at=0, updated_at=0, score=1 - i / 10
            )
            for i, t in enumerate(self.facts[:k])
        ]


def message(seq: int, role: str, content: str) -> Message:
    tokens = COUNTER.count_sync(render_message(role, content))
    return stored_message(seq, role, content, tokens, created_at=seq)


def session(roles: list[str], rng: random.Random) -> list[Message]:
    return [
        message(i + 1, role, " ".join(rng.choices(WORDS, k=rng.randint(1, 30))))
        for i, role in enumerate(roles)
    ]


def assembler(
    history: FakeHistory,
    summaries: FakeSummaries | None = None,
    memories: FakeMemories | None = None,
    **limits: Any,
) -> ContextAssembler:
    settings = {
        "summary_max_tokens": 40,
        "summary_share": 0.3,
        "summary_timeout_s": 1.0,
        "memory_share": 0.2,
        "memory_min_score": 0.0,
        "default_memories": 3,
        **limits,
    }
    return ContextAssembler(
        cast(Any, history),
        cast(Any, summaries or FakeSummaries()),
        cast(Any, memories or FakeMemories()),
        COUNTER,
        None,
        ContextLimits(**settings),
    )


def prompt_tokens(response: ContextResponse) -> int:
    """What the model's prompt holds, counted independently of the assembler."""
    rendered = "".join(render_message(m.role, m.content) for m in response.messages)
    return COUNTER.count_sync(rendered + GENERATION_PROMPT)


def required_tokens(messages: list[Message]) -> int:
    last_user = max(m.seq for m in messages if m.role == "user")
    keep = [m for m in messages if m.role == "system" or m.seq >= last_user]
    return sum(m.tokens for m in keep) + COUNTER.count_sync(GENERATION_PROMPT)


async def test_random_sessions_never_exceed_the_budget_and_keep_the_latest_turn() -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        roles = rng.choices(
            ["user", "assistant", "tool", "system"], [5, 5, 1, 1], k=rng.randint(1, 50)
        )
        roles[rng.randrange(len(roles))] = "user"
        messages = session(roles, rng)
        summaries = FakeSummaries(up=rng.random() < 0.6)
        memories = FakeMemories(["the user likes tea", "the user is called Ada"])
        history = FakeHistory(messages, user_id="u" if rng.random() < 0.5 else None)
        required = required_tokens(messages)
        budget = rng.randint(max(1, required - 20), required + 400)
        request = ContextRequest(budget_tokens=budget)
        if budget < required:
            with pytest.raises(BadRequest) as refused:
                await assembler(history, summaries, memories).assemble("s", request)
            assert refused.value.code == "budget_too_small"
            continue
        response = await assembler(history, summaries, memories).assemble("s", request)
        checked += 1

        assert response.total_tokens <= budget
        assert response.total_tokens == prompt_tokens(response)
        history_out = [m for m in response.messages if m.role != "system"]
        non_system = [m for m in messages if m.role != "system"]
        # The history part is the newest stretch of the conversation, in order.
        tail = non_system[len(non_system) - len(history_out) :]
        assert [(m.role, m.content) for m in history_out] == [(m.role, m.content) for m in tail]
        last_user = max(i for i, m in enumerate(non_system) if m.role == "user")
        assert len(history_out) >= len(non_system) - last_user
        assert response.recent_messages == len(history_out)
        covered = response.summary.upto_seq if response.summary else 0
        first_kept = tail[0].seq if tail else messages[-1].seq + 1
        expected_dropped = sum(1 for m in non_system if covered < m.seq < first_kept)
        assert response.dropped == expected_dropped
    assert checked > 200


async def test_old_turns_are_replaced_by_a_summary_that_is_cached() -> None:
    rng = random.Random(1)
    messages = session(["system"] + ["user", "assistant"] * 20, rng)
    summaries = FakeSummaries()
    context = assembler(FakeHistory(messages), summaries, summary_max_tokens=30)
    request = ContextRequest(budget_tokens=required_tokens(messages) + 150)

    first = await context.assemble("s", request)
    assert first.summary is not None and first.summary.status == "refreshed"
    assert first.messages[0].role == "system" and first.messages[1].content.startswith("Summary")
    assert first.dropped == 0
    again = await context.assemble("s", request)
    assert again.summary is not None and again.summary.status == "cached"
    assert summaries.refreshes == 1

    # Two long turns push older ones out of the window, past what the summary covers.
    for _ in range(2):
        for role in ("user", "assistant"):
            messages.append(message(len(messages) + 1, role, " ".join(WORDS * 3)))
    grown = await context.assemble("s", request)
    assert grown.summary is not None and grown.summary.status == "refreshed"
    assert grown.summary.upto_seq > first.summary.upto_seq
    assert summaries.refreshes == 2


async def test_without_moe_old_turns_are_dropped_and_the_room_goes_to_recent_turns() -> None:
    rng = random.Random(2)
    messages = session(["user", "assistant"] * 20, rng)
    budget = required_tokens(messages) + 150
    with_summary = await assembler(FakeHistory(messages)).assemble(
        "s", ContextRequest(budget_tokens=budget)
    )
    down = await assembler(FakeHistory(messages), FakeSummaries(up=False)).assemble(
        "s", ContextRequest(budget_tokens=budget)
    )
    assert down.summary is None
    assert down.dropped > 0
    assert down.recent_messages > with_summary.recent_messages
    assert down.dropped + down.recent_messages == len(messages)
    assert any("moe_svc is down" in w for w in down.warnings)


async def test_a_stale_summary_is_used_when_moe_cannot_refresh_it() -> None:
    rng = random.Random(3)
    messages = session(["user", "assistant"] * 20, rng)
    summaries = FakeSummaries(up=False)
    summaries.cached = ContextSummary(text="older summary", upto_seq=4)
    response = await assembler(FakeHistory(messages), summaries).assemble(
        "s", ContextRequest(budget_tokens=required_tokens(messages) + 150)
    )
    assert response.summary is not None and response.summary.status == "stale"
    first_kept = len(messages) - response.recent_messages + 1
    assert response.dropped == first_kept - 1 - 4


async def test_memories_come_first_and_are_skipped_when_embeddings_are_down() -> None:
    messages = session(["user", "assistant", "user"], random.Random(4))
    budget = required_tokens(messages) + 200
    facts = ["the user likes green tea", "the user lives in Lyon"]
    response = await assembler(FakeHistory(messages, "u"), memories=FakeMemories(facts)).assemble(
        "s", ContextRequest(budget_tokens=budget)
    )
    assert [m.text for m in response.memories] == facts
    assert "green tea" in response.messages[0].content

    down = await assembler(FakeHistory(messages, "u"), memories=FakeMemories(up=False)).assemble(
        "s", ContextRequest(budget_tokens=budget)
    )
    assert down.memories == []
    assert down.recent_messages == 3
    assert any("rag_svc is down" in w for w in down.warnings)


async def test_the_system_prompt_of_the_request_replaces_the_sessions() -> None:
    messages = session(["system", "user"], random.Random(5))
    response = await assembler(FakeHistory(messages)).assemble(
        "s", ContextRequest(budget_tokens=500, system_prompt="Be brief.")
    )
    assert response.messages[0].content == "Be brief."
    assert [m.role for m in response.messages] == ["system", "user"]


async def test_a_session_without_a_user_message_is_refused() -> None:
    messages = session(["system", "assistant"], random.Random(6))
    with pytest.raises(BadRequest) as refused:
        await assembler(FakeHistory(messages)).assemble("s", ContextRequest(budget_tokens=500))
    assert refused.value.code == "no_user_turn"
