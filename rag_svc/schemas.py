"""rag_svc's own wire models (those other services share live in `common.contracts.rag`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "CollectionCreate",
    "CollectionInfo",
    "CollectionList",
    "CollectionUpdate",
    "Deleted",
]


class CollectionCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # True: readable by every tenant, writable by admins (admin keys only).
    shared: bool = False


class CollectionUpdate(BaseModel):
    """`PATCH /v1/collections/{name}` (admin keys only)."""

    # True: share the caller's own collection; False: make a shared one the caller's own.
    shared: bool


class CollectionInfo(BaseModel):
    name: str
    documents: int
    chunks: int
    # The dense index: "flat" (exact inner product) or "hnsw".
    index: Literal["flat", "hnsw"]
    created_at: int
    metadata: dict[str, Any]
    # Readable by every tenant (else the caller's tenant's own).
    shared: bool


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfo]


class Deleted(BaseModel):
    id: str
    object: Literal["collection", "document"]
    deleted: bool = True
