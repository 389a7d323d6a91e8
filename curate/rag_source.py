"""A rag collection as records, read page by page over rag_svc's HTTP API.

`GET /v1/collections/{name}/documents?after=&limit=` lists a collection's
documents in id order (`common.contracts.rag.DocumentPage`); each document is a
record with its id, its text and its metadata. An API key from the environment
variable named on the command line goes out as a bearer token, for a URL that
checks keys; rag_svc itself trusts its network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import quote

import httpx

from common.contracts.rag import DocumentPage
from curate.records import BadRecord, Record

__all__ = ["DEFAULT_RAG_URL", "PAGE_SIZE", "RagSourceError", "read_collection"]

DEFAULT_RAG_URL = "http://127.0.0.1:8003"
PAGE_SIZE = 200


class RagSourceError(RuntimeError):
    """The collection could not be read: its status and rag_svc's message."""


def read_collection(
    url: str, collection: str, api_key_env: str | None = None, page_size: int = PAGE_SIZE
) -> Iterator[Record | BadRecord]:
    """Every document of `collection`, in id order, one page in memory at a time."""
    key = os.environ.get(api_key_env) if api_key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    path = f"/v1/collections/{quote(collection, safe='')}/documents"
    after: str | None = None
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if after is not None:
                params["after"] = after
            response = client.get(path, params=params)
            if response.status_code != 200:
                raise RagSourceError(f"{url}{path}: {response.status_code} {response.text[:300]}")
            page = DocumentPage.model_validate_json(response.content)
            for document in page.documents:
                yield Record(document.id, document.text, {"metadata": document.metadata})
            if page.next_after is None:
                return
            after = page.next_after
