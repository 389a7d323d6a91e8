"""`knowledge_search`: search a rag_svc collection (rag_svc's `POST /v1/collections/{name}/search`).

Calls `POST /v1/collections/{name}/search` on rag_svc through the shared
client, so the request id travels along and rag_svc's errors (an unknown
collection: 404) come back with their status and origin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.caller import TOOL_SCOPES
from common.contracts.rag import COLLECTION_NAME_PATTERN
from common.http_client import ServiceClient
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["KnowledgeSearchTool"]


class KnowledgeArguments(ToolArguments):
    query: str = Field(min_length=1, max_length=2000, description="What to search for.")
    collection: str | None = Field(
        None, pattern=COLLECTION_NAME_PATTERN, description="Collection; default: the service's."
    )
    k: int = Field(5, ge=1, le=50, description="How many passages to return.")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retrieval mode.")
    rerank: bool = Field(True, description="Rerank the hits with the cross-encoder.")


class _Hit(BaseModel):
    # rag_svc's search result (common.contracts.rag); unknown extra fields are kept.
    model_config = ConfigDict(extra="allow")

    doc_id: str | None = None
    chunk_id: str | None = None
    text: str = ""
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class _SearchResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    results: list[_Hit]


class KnowledgeSearchTool(Tool):
    name = "knowledge_search"
    description = (
        "Search the document collections (hybrid dense + BM25 retrieval with reranking) and "
        "return the best passages with their document ids and scores."
    )
    arguments = KnowledgeArguments
    scope = TOOL_SCOPES["knowledge_search"]

    def __init__(
        self, client: Callable[[], ServiceClient], *, default_collection: str, timeout_s: float
    ) -> None:
        # A getter, not a client: the app's upstream clients exist only once it has started.
        self._client = client
        self.default_collection = default_collection
        self.timeout_s = timeout_s

    async def run(self, arguments: Any) -> ToolResult:
        args: KnowledgeArguments = arguments
        collection = args.collection or self.default_collection
        payload = {"query": args.query, "k": args.k, "mode": args.mode, "rerank": args.rerank}
        body = await self._client().post_json(
            f"/v1/collections/{collection}/search", payload, idempotent=True
        )
        hits = _SearchResponse.model_validate(body).results
        return ToolResult(
            {"collection": collection, "results": [hit.model_dump() for hit in hits[: args.k]]}
        )
