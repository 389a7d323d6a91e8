"""Routes the gateway passes to one service: embeddings, collections, documents, feedback.

Names taken from the request path are checked against one pattern
(`COLLECTION_NAME_PATTERN`) and URL-encoded before they go into an upstream
path; query parameters pass only when the route documents them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from common.contracts.rag import COLLECTION_NAME_PATTERN
from common.errors import BadRequest, ServiceError
from common.http_client import ServiceClient
from gateway.edge import upstream_timer

__all__ = [
    "forward_documents",
    "forward_json",
    "forward_stream",
    "read_json",
    "read_query",
    "upstream_path",
]

_PATH_NAME = re.compile(COLLECTION_NAME_PATTERN)

QueryT = TypeVar("QueryT", bound=BaseModel)


def upstream_path(template: str, **names: str) -> str:
    """`template` with each `{param}` filled in: checked against the one pattern of path
    names (400 `invalid_<param>_name` otherwise), then URL-encoded."""
    for param, value in names.items():
        if not _PATH_NAME.fullmatch(value):
            raise BadRequest(
                f"Invalid {param} name {value[:80]!r}: use 1 to 64 letters, digits, '_' or '-', "
                "starting with a letter or digit.",
                param=param,
                code=f"invalid_{param}_name",
            )
    return template.format(**{param: quote(value, safe="") for param, value in names.items()})


def read_query(request: Request, model: type[QueryT]) -> QueryT:
    """The request's query parameters as `model` (400 for an unknown, repeated or bad one)."""
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        raise BadRequest(
            f"Query parameter '{repeated[0]}' is given more than once.",
            param=repeated[0],
            code="invalid_query",
        )
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None


def _unsupported_media_type(expected: str) -> ServiceError:
    return ServiceError(
        f"Content-Type must be {expected}.",
        status_code=415,
        error_type="invalid_request_error",
        code="unsupported_media_type",
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body (415 for another content type, 400 when malformed)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise _unsupported_media_type("application/json")
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest(f"Malformed JSON body: {exc}.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("The JSON body must be an object.", code="invalid_json")
    return body


def _relay(upstream: Any) -> Response:
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
    )


async def forward_json(
    request: Request,
    client: ServiceClient,
    path: str,
    timeout_s: float,
    method: str = "POST",
    query: BaseModel | None = None,
    body: dict[str, Any] | None = None,
) -> Response:
    """Send `body` (default: the caller's JSON, for POST and PATCH) or checked `query` to
    `client`; relay its answer."""
    if body is None and method in ("POST", "PATCH"):
        body = await read_json(request)
    params = query.model_dump(exclude_none=True) if query is not None else None
    async with upstream_timer():
        upstream = await client.request(method, path, json=body, params=params, timeout_s=timeout_s)
    return _relay(upstream)


async def forward_stream(client: ServiceClient, path: str, timeout_s: float) -> Response:
    """GET `path` from `client` and relay its body as it arrives (a long export, say).

    The upstream's errors reach the caller before the first byte, in the one error shape.
    """
    stack = AsyncExitStack()
    async with upstream_timer():
        upstream = await stack.enter_async_context(client.stream("GET", path, timeout_s=timeout_s))

    async def body() -> AsyncIterator[bytes]:
        async with stack:
            async for piece in upstream.aiter_bytes():
                yield piece

    media_type = upstream.headers.get("content-type", "application/octet-stream")
    return StreamingResponse(body(), media_type=media_type, background=BackgroundTask(stack.aclose))


async def forward_documents(
    request: Request, rag: ServiceClient, collection: str, timeout_s: float
) -> Response:
    """rag_svc document upload: a JSON body or a multipart file, passed on as it came."""
    path = upstream_path("/v1/collections/{collection}/documents", collection=collection)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        data: dict[str, str] = {}
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read()
                files.append(
                    (field, (value.filename or "upload", content, value.content_type or ""))
                )
            else:
                data[field] = str(value)
        async with upstream_timer():
            upstream = await rag.request("POST", path, files=files, data=data, timeout_s=timeout_s)
        return _relay(upstream)
    if content_type.split(";")[0].strip() != "application/json":
        raise _unsupported_media_type("application/json or multipart/form-data")
    body = await read_json(request)
    async with upstream_timer():
        upstream = await rag.request("POST", path, json=body, timeout_s=timeout_s)
    return _relay(upstream)
