"""`POST /v1/embeddings` in OpenAI's shape, over the service's embedder."""

from __future__ import annotations

import base64

import numpy as np

from common.contracts.rag import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MODEL,
    EmbeddingData,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
)
from common.errors import BadRequest, NotFound
from common.minilm import MAX_SEQ_TOKENS, MiniLMEmbedder

__all__ = ["MODEL_ALIASES", "create_embeddings"]

MODEL_ALIASES = frozenset(
    {EMBEDDING_MODEL.lower(), f"sentence-transformers/{EMBEDDING_MODEL}".lower()}
)


def create_embeddings(
    embedder: MiniLMEmbedder, request: EmbeddingsRequest, max_inputs: int
) -> EmbeddingsResponse:
    if request.model.lower() not in MODEL_ALIASES:
        raise NotFound(
            f"The model {request.model!r} does not exist here; use {EMBEDDING_MODEL!r}.",
            param="model",
            code="model_not_found",
        )
    if request.dimensions is not None and request.dimensions != EMBEDDING_DIMENSIONS:
        raise BadRequest(
            f"{EMBEDDING_MODEL} makes {EMBEDDING_DIMENSIONS}-dimensional embeddings only.",
            param="dimensions",
            code="unsupported_dimensions",
        )
    texts = [request.input] if isinstance(request.input, str) else request.input
    if len(texts) > max_inputs:
        raise BadRequest(
            f"At most {max_inputs} inputs per request (got {len(texts)}).",
            param="input",
            code="too_many_inputs",
        )
    vectors = embedder.encode(texts)
    # Inputs longer than the model's window are truncated, as sentence-transformers does.
    tokens = sum(min(n + 2, MAX_SEQ_TOKENS) for n in embedder.count_tokens(texts))
    data = [
        EmbeddingData(index=i, embedding=_encode(vector, request.encoding_format))
        for i, vector in enumerate(vectors)
    ]
    return EmbeddingsResponse(
        data=data,
        model=EMBEDDING_MODEL,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
