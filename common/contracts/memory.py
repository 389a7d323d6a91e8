"""memory_svc's wire models that other services use (its OpenAPI at `/docs`).

Messages and sessions (`/v1/sessions/...`), context assembly
(`POST /v1/sessions/{sid}/context`), long-term memories
(`/v1/users/{uid}/memories...`) and feedback (`/v1/feedback`).
Times are Unix seconds (float) from the Redis clock.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from common.caller import DEFAULT_TENANT

__all__ = [
    "ID_PATTERN",
    "AppendMessagesRequest",
    "ContextMemory",
    "ContextMessage",
    "ContextRequest",
    "ContextResponse",
    "ContextSummary",
    "DpoPair",
    "Feedback",
    "FeedbackCounts",
    "FeedbackFormat",
    "FeedbackPage",
    "FeedbackRequest",
    "FeedbackTurn",
    "KtoExample",
    "Memory",
    "MemoryAddRequest",
    "MemoryAddResponse",
    "MemoryPage",
    "MemorySearchRequest",
    "MemorySearchResponse",
    "MemorySearchResult",
    "MemoryUpdate",
    "Message",
    "MessageIn",
    "MessagePage",
    "Role",
    "SessionExport",
    "SessionInfo",
    "SessionPage",
    "SessionUpdate",
]

# Session, user, message and memory ids: they end up in Redis key names.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$"
Id = Annotated[str, Field(pattern=ID_PATTERN, description="1-128 of A-Z a-z 0-9 _ . @ + = -")]

Role = Literal["system", "user", "assistant", "tool"]


# --- history -----------------------------------------------------------------


class MessageIn(BaseModel):
    """A message to append. `id` makes the append idempotent: a retry returns the original."""

    role: Role
    content: str
    name: Annotated[str, Field(max_length=64)] | None = None
    user_id: Id | None = None
    id: Id | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class AppendMessagesRequest(BaseModel):
    """Several messages appended in one atomic step, in this order."""

    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=100)]
    user_id: Id | None = None


class Message(BaseModel):
    id: str
    # Position in the session, from 1; appends are numbered in the order Redis applied them.
    seq: int
    session_id: str
    role: Role
    content: str
    name: str | None = None
    user_id: str | None = None
    created_at: float
    # Tokens this message takes in the core model's prompt (chat template included).
    tokens: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessagePage(BaseModel):
    """Newest first. Pass `next_before` as `before` to read the next (older) page."""

    object: Literal["list"] = "list"
    data: list[Message]
    has_more: bool
    next_before: int | None = None


class SessionInfo(BaseModel):
    id: str
    user_id: str | None = None
    created_at: float
    updated_at: float
    message_count: int
    # Retention after the last message; 0: kept until deleted.
    ttl_s: int
    expires_at: float | None = None


class SessionPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[SessionInfo]
    has_more: bool


class SessionUpdate(BaseModel):
    ttl_s: Annotated[int, Field(ge=0, le=10 * 365 * 24 * 3600)]


class SessionExport(BaseModel):
    session: SessionInfo
    messages: list[Message]
    summary: ContextSummary | None = None
    exported_at: float


# --- context -----------------------------------------------------------------


class ContextRequest(BaseModel):
    budget_tokens: Annotated[int, Field(ge=1, le=1_000_000)]
    # Replaces the session's own system messages in this context.
    system_prompt: str | None = None
    include_summary: bool = True
    # Long-term memories to add (the session's user's); unset: the service default.
    max_memories: Annotated[int, Field(ge=0, le=20)] | None = None


class ContextMessage(BaseModel):
    """A message of a conversation's context, ready for a model (reasoning_svc takes them too)."""

    role: Role
    content: str
    name: str | None = None


class ContextSummary(BaseModel):
    text: str
    # The summary covers the session's messages 1..upto_seq.
    upto_seq: int
    # cached: reused; refreshed: written for this request; stale: older than the
    # dropped turns because moe_svc could not refresh it.
    status: Literal["cached", "refreshed", "stale"] = "cached"
    model: str | None = None
    updated_at: float | None = None


class ContextMemory(BaseModel):
    id: str
    text: str
    score: float


class ContextResponse(BaseModel):
    """Messages ready for the model: system, memories, summary, recent turns, latest turn."""

    session_id: str
    messages: list[ContextMessage]
    budget_tokens: int
    # The messages in the chat template plus the assistant header; never above the budget.
    total_tokens: int
    token_counter: str
    # History messages included word for word (the latest turn among them).
    recent_messages: int
    # History messages neither included nor covered by the summary.
    dropped: int
    summary: ContextSummary | None = None
    memories: list[ContextMemory] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


# --- long-term memory ----------------------------------------------------------


class MemoryAddRequest(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    metadata: dict[str, Any] = Field(default_factory=dict)


class Memory(BaseModel):
    id: str
    user_id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    updated_at: float
    # How many adds this memory absorbed (1 + near-duplicates merged into it).
    mentions: int = 1


class MemoryAddResponse(BaseModel):
    memory: Memory
    # added: new; merged: a near-duplicate existed and took the new wording or
    # metadata; unchanged: the same fact was already stored.
    event: Literal["added", "merged", "unchanged"]
    similarity: float | None = None


class MemoryUpdate(BaseModel):
    text: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    metadata: dict[str, Any] | None = None


class MemoryExtractRequest(BaseModel):
    """What the user wrote, from which facts about them are extracted (and stored)."""

    texts: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=4000)]],
        Field(min_length=1, max_length=20),
    ]
    # False: return the facts without storing them (a preview).
    store: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryExtractResponse(BaseModel):
    # The facts kept, in the model's words ("The user ...").
    facts: list[str]
    # One per stored fact when `store` (added, merged into a near-duplicate, or unchanged).
    stored: list[MemoryAddResponse] = Field(default_factory=list)
    # Written by the model but dropped: not about the user, nothing from the texts, or repeats.
    dropped: list[str] = Field(default_factory=list)
    # The model asked, or None when no text spoke of the user (the model is not asked then).
    model: str | None = None


class MemorySearchRequest(BaseModel):
    query: Annotated[str, Field(min_length=1, max_length=8000)]
    k: Annotated[int, Field(ge=1, le=100)] = 5
    min_score: Annotated[float, Field(ge=-1, le=1)] | None = None


class MemorySearchResult(Memory):
    score: float


class MemorySearchResponse(BaseModel):
    results: list[MemorySearchResult]


class MemoryPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[Memory]
    total: int
    has_more: bool


# --- feedback -------------------------------------------------------------------


class FeedbackRequest(BaseModel):
    """One rating per message: a second one for the same message replaces the first."""

    session_id: Id
    message_id: Id
    rating: Literal[1, -1]
    comment: Annotated[str, Field(max_length=4000)] | None = None
    preferred_over: Id | None = Field(
        None,
        description="Another answer of the same session that this one was picked over "
        "(a regenerated answer to the same prompt): stored as a preference, exported as a "
        "DPO pair. A later rating without it keeps the pick.",
    )


class FeedbackTurn(BaseModel):
    """A message of the conversation that led to a rated answer."""

    role: str
    content: str


class Feedback(BaseModel):
    id: str
    # The tenant that owns it: an admin's listing spans tenants.
    tenant: str = DEFAULT_TENANT
    session_id: str
    message_id: str
    rating: Literal[1, -1]
    comment: str | None = None
    user_id: str | None = None
    # The rated message as it was, so the feedback outlives the session's retention.
    message_role: str
    message_content: str
    created_at: float
    updated_at: float
    # What the answer answered: the user turn before it, and the turns before that
    # (a regenerated attempt left out). None and []: a record stored before they were kept.
    prompt: str | None = None
    context: list[FeedbackTurn] = Field(default_factory=list)
    # The answer this one was picked over, as it was: a preference.
    preferred_over: str | None = None
    rejected_content: str | None = None


FeedbackFormat = Literal["kto", "dpo", "raw"]


class KtoExample(BaseModel):
    """One rated answer as unpaired binary feedback (KTO), in the conversational format:
    `prompt` is the conversation up to and including the user's turn."""

    prompt: list[FeedbackTurn]
    completion: list[FeedbackTurn]
    label: bool


class DpoPair(BaseModel):
    """Two answers to one prompt, the preferred one first (DPO), conversational format."""

    prompt: list[FeedbackTurn]
    chosen: list[FeedbackTurn]
    rejected: list[FeedbackTurn]


class FeedbackCounts(BaseModel):
    total: int
    positive: int
    negative: int


class FeedbackPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[Feedback]
    has_more: bool
    # Of the whole filtered set (all pages), not just this one.
    counts: FeedbackCounts


SessionExport.model_rebuild()
