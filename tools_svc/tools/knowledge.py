"""`knowledge_search`: search the knowledge the caller may read (rag_svc's `POST /v1/search`).

One ranking over the collection a call names, else the service's configured
one, else every collection the caller may read (the shared `wiki` and the
tenant's own), each result naming its collection. The call goes through the
shared client, so the caller and the request id travel along and rag_svc's
errors (an unknown collection: 404) come back with their status and origin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from common.caller import TOOL_SCOPES
from common.contracts.rag import (
    COLLECTION_NAME_PATTERN,
    CollectionsSearchRequest,
    SearchResponse,
)
from common.http_client import ServiceClient
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["KnowledgeSearchTool"]


class KnowledgeArguments(ToolArguments):
    query: str = Field(min_length=1, max_length=2000, description="What to search for.")
    collection: str | None = Field(
        None,
        pattern=COLLECTION_NAME_PATTERN,
        description="One collection to search; default: every collection the caller may read.",
    )
    k: int = Field(5, ge=1, le=50, description="How many passages to return.")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retrieval mode.")
    rerank: bool = Field(True, description="Rerank the hits with the cross-encoder.")


class KnowledgeSearchTool(Tool):
    name = "knowledge_search"
    description = (
        "Search the knowledge base and the caller's document collections (hybrid dense + BM25 "
        "retrieval with reranking) and return the best passages with their collection, "
        "document ids and scores."
    )
    arguments = KnowledgeArguments
    scope = TOOL_SCOPES["knowledge_search"]

    def __init__(
        self,
        client: Callable[[], ServiceClient],
        *,
        default_collection: str | None,
        timeout_s: float,
    ) -> None:
        # A getter, not a client: the app's upstream clients exist only once it has started.
        self._client = client
        self.default_collection = default_collection
        self.timeout_s = timeout_s

    async def run(self, arguments: Any) -> ToolResult:
        args: KnowledgeArguments = arguments
        collection = args.collection or self.default_collection
        request = CollectionsSearchRequest(
            query=args.query,
            k=args.k,
            mode=args.mode,
            rerank=args.rerank,
            collections=[collection] if collection else None,
        )
        body = await self._client().post_json(
            "/v1/search", request.model_dump(exclude_none=True), idempotent=True
        )
        hits = SearchResponse.model_validate(body).results
        return ToolResult(
            {
                "collection": collection,
                "results": [hit.model_dump(exclude={"scores"}) for hit in hits[: args.k]],
            }
        )
