"""Sentence embeddings for long-term memory, from rag_svc's `/v1/embeddings`.

rag_svc serves all-MiniLM-L6-v2 (384-d) behind the OpenAI embeddings API.
When it cannot answer, the parts of memory_svc that need vectors (adding and
searching memories) answer 503 naming rag_svc; history, state and feedback do
not depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from common.errors import ServiceError, ServiceUnavailable
from common.http_client import ServiceClient

__all__ = ["Embedder", "EmbeddingsUnavailable", "RagEmbedder", "Vectors"]

Vectors = npt.NDArray[np.float32]  # (n, d), rows of unit length


class EmbeddingsUnavailable(ServiceUnavailable):
    """rag_svc could not embed: long-term memory cannot add or search right now."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "Long-term memory needs embeddings from rag_svc (POST /v1/embeddings), which "
            f"failed: {reason}. History, user state and feedback keep working.",
            code="embeddings_unavailable",
        )


class Embedder(Protocol):
    async def embed(self, texts: Sequence[str]) -> Vectors: ...


def normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


class RagEmbedder:
    def __init__(self, client: ServiceClient, model: str, timeout_s: float) -> None:
        self._client = client
        self._model = model
        self._timeout_s = timeout_s

    async def embed(self, texts: Sequence[str]) -> Vectors:
        try:
            body = await self._client.post_json(
                "/v1/embeddings",
                {"model": self._model, "input": list(texts)},
                timeout_s=self._timeout_s,
                idempotent=True,  # the same texts give the same vectors: safe to retry
            )
        except ServiceError as exc:
            raise EmbeddingsUnavailable(exc.message) from exc
        try:
            rows = sorted(body["data"], key=lambda item: int(item["index"]))
            vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingsUnavailable(f"unreadable answer ({type(exc).__name__}: {exc})") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbeddingsUnavailable(
                f"asked for {len(texts)} vectors, got an array of shape {vectors.shape}"
            )
        return normalise(vectors)
