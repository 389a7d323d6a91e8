"""memory_svc's own wire models (the shared ones are in `common.contracts.memory`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from common.contracts.memory import Message

__all__ = ["Deleted", "ErasureReport", "MessageList"]


class MessageList(BaseModel):
    """The messages of a batch append, in the order they were stored."""

    object: Literal["list"] = "list"
    data: list[Message]


class Deleted(BaseModel):
    id: str
    deleted: bool = True
    # For a session: how many messages went with it.
    messages: int | None = None


class ErasureReport(BaseModel):
    """What `DELETE /v1/users/{uid}` removed."""

    user_id: str
    keys_deleted: int
    sessions: int
    messages: int
    memories: int
    state: bool
    feedback: int
