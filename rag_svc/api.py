"""rag_svc's routes: thin handlers over the library; `rag_svc.access` decides who reaches what."""

from __future__ import annotations

import asyncio
import json
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from common.contracts.rag import (
    AnswerRequest,
    AnswerResponse,
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CollectionsAnswerRequest,
    CollectionsSearchRequest,
    CollectionUpdate,
    Deleted,
    DocumentIn,
    DocumentOut,
    DocumentPage,
    EmbeddingsRequest,
    EmbeddingsResponse,
    IngestRequest,
    IngestResponse,
    SearchRequest,
    SearchResponse,
)
from common.errors import BadRequest, PayloadTooLarge, ServiceError
from common.openapi import error_responses
from rag_svc import access
from rag_svc.deps import (
    AnswererDep,
    CallerDep,
    DocumentIdDep,
    LibraryDep,
    ReadableDep,
    SettingsDep,
    WritableDep,
)
from rag_svc.extraction import (
    ExtractionError,
    UnsupportedFileType,
    detect_kind,
    extract_text,
)
from rag_svc.federated import readable_collections, search_collections
from rag_svc.openai_embeddings import create_embeddings
from rag_svc.settings import RagSettings

__all__ = ["router"]

router = APIRouter(prefix="/v1")

# What a multipart body may add around the file itself (boundaries, other fields).
MULTIPART_SLACK_BYTES = 64 * 1024

_INGEST_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": IngestRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "id": {"type": "string"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "redact_pii": {"type": "boolean"},
                    },
                }
            },
        },
    }
}


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_type = "invalid_request_error"


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    tags=["embeddings"],
    responses=error_responses(404),
)
async def embeddings(
    body: EmbeddingsRequest, library: LibraryDep, settings: SettingsDep
) -> EmbeddingsResponse:
    embedder = library.require_models().embedder
    return await asyncio.to_thread(
        create_embeddings, embedder, body, settings.embeddings_max_inputs
    )


@router.post(
    "/collections",
    response_model=CollectionInfo,
    status_code=status.HTTP_201_CREATED,
    tags=["collections"],
    responses=error_responses(403, 409),
)
async def create_collection(
    body: CollectionCreate, library: LibraryDep, caller: CallerDep
) -> dict[str, Any]:
    """A new collection of the caller's tenant; `shared: true` (admins): readable by all."""
    ref = access.collection_to_create(library, caller, body.name, body.shared)
    return await asyncio.to_thread(library.create_collection, ref, body.metadata)


@router.get("/collections", response_model=CollectionList, tags=["collections"])
async def list_collections(library: LibraryDep, caller: CallerDep) -> CollectionList:
    """The caller's tenant's collections and the shared ones."""
    infos = await asyncio.to_thread(access.list_collections, library, caller)
    return CollectionList(data=[CollectionInfo.model_validate(i) for i in infos])


@router.get("/collections/{name}", response_model=CollectionInfo, tags=["collections"])
async def get_collection(ref: ReadableDep, library: LibraryDep) -> dict[str, Any]:
    return library.info(ref)


@router.patch(
    "/collections/{name}",
    response_model=CollectionInfo,
    tags=["collections"],
    responses=error_responses(403, 409),
)
async def update_collection(
    name: str, body: CollectionUpdate, library: LibraryDep, caller: CallerDep
) -> dict[str, Any]:
    """Share a collection of the admin's tenant with every tenant, or take a shared one back."""
    return await asyncio.to_thread(access.set_shared, library, caller, name, body.shared)


@router.delete("/collections/{name}", response_model=Deleted, tags=["collections"])
async def delete_collection(ref: WritableDep, library: LibraryDep) -> Deleted:
    await asyncio.to_thread(library.delete_collection, ref)
    return Deleted(id=ref.name, object="collection")


@router.post(
    "/collections/{name}/documents",
    response_model=IngestResponse,
    tags=["documents"],
    openapi_extra=_INGEST_BODY_DOC,
)
async def ingest_documents(
    ref: WritableDep, request: Request, library: LibraryDep, settings: SettingsDep
) -> IngestResponse:
    """JSON `{documents: [...]}`, or a multipart upload with a `file` (txt, md, html, pdf)."""
    # The collection was resolved (404, 403) before the body is read.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        documents, redact = await _documents_from_upload(request, settings)
    elif media_type in ("application/json", ""):
        documents, redact = await _documents_from_json(request, settings)
    else:
        raise UnsupportedMediaType(
            f"Send documents as application/json or a file as multipart/form-data, "
            f"not {media_type}.",
            code="unsupported_media_type",
        )
    return await asyncio.to_thread(library.ingest, ref, documents, redact)


@router.get("/collections/{name}/documents", response_model=DocumentPage, tags=["documents"])
async def list_documents(
    ref: ReadableDep,
    library: LibraryDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentPage:
    """The collection's documents in id order, `limit` at a time, after the id `after`."""
    return await asyncio.to_thread(library.list_documents, ref, after, limit)


@router.get(
    "/collections/{name}/documents/{doc_id}", response_model=DocumentOut, tags=["documents"]
)
async def get_document(ref: ReadableDep, doc_id: DocumentIdDep, library: LibraryDep) -> DocumentOut:
    return library.get_document(ref, doc_id)


@router.delete("/collections/{name}/documents/{doc_id}", response_model=Deleted, tags=["documents"])
async def delete_document(ref: WritableDep, doc_id: DocumentIdDep, library: LibraryDep) -> Deleted:
    await asyncio.to_thread(library.delete_document, ref, doc_id)
    return Deleted(id=doc_id, object="document")


@router.post("/collections/{name}/search", response_model=SearchResponse, tags=["search"])
async def search(ref: ReadableDep, body: SearchRequest, library: LibraryDep) -> SearchResponse:
    return await asyncio.to_thread(library.search, ref, body)


@router.post("/collections/{name}/answer", response_model=AnswerResponse, tags=["search"])
async def answer(ref: ReadableDep, body: AnswerRequest, answerer: AnswererDep) -> AnswerResponse:
    return await answerer.answer([ref], body)


@router.post(
    "/search", response_model=SearchResponse, tags=["search"], responses=error_responses(404)
)
async def search_many(
    body: CollectionsSearchRequest, library: LibraryDep, caller: CallerDep
) -> SearchResponse:
    """One ranking over `collections` (absent: every collection the caller may read)."""
    refs = await asyncio.to_thread(readable_collections, library, caller, body.collections)
    request = SearchRequest.model_validate(body.model_dump(exclude={"collections"}))
    results = await asyncio.to_thread(search_collections, library, refs, request)
    return SearchResponse(results=results)


@router.post(
    "/answer", response_model=AnswerResponse, tags=["search"], responses=error_responses(404)
)
async def answer_many(
    body: CollectionsAnswerRequest, library: LibraryDep, caller: CallerDep, answerer: AnswererDep
) -> AnswerResponse:
    """An answer from `collections` (absent: every collection the caller may read)."""
    refs = await asyncio.to_thread(readable_collections, library, caller, body.collections)
    return await answerer.answer(refs, body)


# --- request bodies -------------------------------------------------------------------


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the {limit}-byte limit (RAG_MAX_UPLOAD_BYTES).",
        code="payload_too_large",
    )


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def _documents_from_json(
    request: Request, settings: RagSettings
) -> tuple[list[DocumentIn], bool | None]:
    limit = settings.max_upload_bytes + MULTIPART_SLACK_BYTES
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(settings.max_upload_bytes)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_large(settings.max_upload_bytes)
    try:
        parsed = IngestRequest.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    return parsed.documents, parsed.redact_pii


async def _documents_from_upload(
    request: Request, settings: RagSettings
) -> tuple[list[DocumentIn], bool | None]:
    limit = settings.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > limit + MULTIPART_SLACK_BYTES:
        raise _too_large(limit)
    form = await request.form(max_files=1, max_fields=16)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise BadRequest("The multipart body needs a `file` part.", param="file", code="no_file")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    try:
        kind = detect_kind(upload.filename, upload.content_type)
    except UnsupportedFileType as exc:
        raise UnsupportedMediaType(str(exc), param="file", code="unsupported_file_type") from None
    try:
        extracted = await asyncio.to_thread(extract_text, data, kind)
    except ExtractionError as exc:
        raise BadRequest(str(exc), param="file", code="unreadable_file") from None
    if not extracted.text.strip():
        raise BadRequest(
            f"The {kind} file {upload.filename!r} holds no text.",
            param="file",
            code="empty_document",
        )
    metadata = _form_metadata(form.get("metadata"))
    base = {"source": upload.filename or f"upload.{kind}", "content_type": kind}
    if extracted.title:
        base["title"] = extracted.title
    # A file's id defaults to its name, so uploading a new version replaces the old one.
    filename = PurePath(upload.filename).name if upload.filename else None
    doc_id = form.get("id")
    fields: dict[str, Any] = {
        "id": doc_id if isinstance(doc_id, str) and doc_id else filename,
        "text": extracted.text,
        "metadata": {**base, **metadata},
    }
    try:
        document = DocumentIn.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    redact = form.get("redact_pii")
    flag = None if not isinstance(redact, str) or not redact else redact.lower() in ("1", "true")
    return [document], flag


def _form_metadata(raw: object) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BadRequest(
            "The `metadata` part must be a JSON object.", param="metadata", code="invalid_value"
        )
    return value
