"""memory_svc routes (thin: HTTP in and out, the work in named modules)."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from common.caller import TENANT_PATTERN, current_caller
from common.contracts.memory import (
    ID_PATTERN,
    AppendMessagesRequest,
    ContextRequest,
    ContextResponse,
    Feedback,
    FeedbackFormat,
    FeedbackPage,
    FeedbackRequest,
    Memory,
    MemoryAddRequest,
    MemoryAddResponse,
    MemoryExtractRequest,
    MemoryExtractResponse,
    MemoryPage,
    MemorySearchRequest,
    MemorySearchResponse,
    MemoryUpdate,
    Message,
    MessageIn,
    MessagePage,
    SessionExport,
    SessionInfo,
    SessionPage,
    SessionUpdate,
)
from common.errors import BadRequest, Forbidden, ServiceUnavailable
from common.openapi import error_responses, json_body
from memory_svc import keys
from memory_svc.deps import ComponentsDep
from memory_svc.facts import ExtractionUnavailable
from memory_svc.feedback import listed_tenant, rated_conversation
from memory_svc.feedback_export import EXPORT_MEDIA_TYPE, export_lines
from memory_svc.intake import prepare
from memory_svc.schemas import Deleted, ErasureReport, MessageList
from memory_svc.user_state import StateDocument, parse_etags

__all__ = ["router"]

router = APIRouter(prefix="/v1")

SessionId = Annotated[str, Path(pattern=ID_PATTERN, description="Session id.")]
UserId = Annotated[str, Path(pattern=ID_PATTERN, description="User id.")]
MemoryId = Annotated[str, Path(pattern=ID_PATTERN, description="Memory id.")]
Limit = Annotated[int, Query(ge=1, le=1000)]
# Bounded so that offset + limit stays a valid Redis index (a 64-bit signed integer).
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
M = TypeVar("M", bound=BaseModel)


def _json(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status_code, headers=headers)


def _validated(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # The shared handler turns this into a 400 naming the failing field.
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


# --- sessions and messages ---------------------------------------------------------


@router.post(
    "/sessions/{sid}/messages",
    response_model=Message | MessageList,
    status_code=201,
    summary="Append a message, or several at once as {messages: [...]}",
    responses={
        200: {"model": Message | MessageList, "description": "Already stored (same ids)."},
        **error_responses(409),
    },
    openapi_extra=json_body(MessageIn, AppendMessagesRequest),
)
async def append_messages(sid: SessionId, c: ComponentsDep, raw: Request) -> JSONResponse:
    body = await _json_body(raw)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="invalid_json")
    batch = "messages" in body
    request = (
        _validated(AppendMessagesRequest, body)
        if batch
        else AppendMessagesRequest(messages=[_validated(MessageIn, body)])
    )
    counts, user_id = await prepare(
        request.messages,
        request.user_id,
        max_chars=c.settings.max_message_chars,
        counter=c.counter,
    )
    stored, created = await c.history.append(sid, request.messages, counts, user_id)
    status = 201 if created else 200
    return _json(MessageList(data=stored) if batch else stored[0], status)


@router.get("/sessions/{sid}/messages", response_model=MessagePage)
async def list_messages(
    sid: SessionId,
    c: ComponentsDep,
    limit: Limit = 50,
    before: Annotated[int | None, Query(ge=1, description="Only messages with seq below")] = None,
) -> MessagePage:
    page, has_more, next_before = await c.history.page(sid, limit=limit, before=before)
    return MessagePage(data=page, has_more=has_more, next_before=next_before)


@router.get("/sessions/{sid}", response_model=SessionInfo)
async def get_session(sid: SessionId, c: ComponentsDep) -> SessionInfo:
    return await c.history.info(sid)


@router.patch("/sessions/{sid}", response_model=SessionInfo)
async def update_session(sid: SessionId, update: SessionUpdate, c: ComponentsDep) -> SessionInfo:
    return await c.history.set_ttl(sid, update.ttl_s)


@router.delete("/sessions/{sid}", response_model=Deleted)
async def delete_session(sid: SessionId, c: ComponentsDep) -> Deleted:
    return Deleted(id=sid, messages=await c.history.delete(sid))


@router.get("/sessions/{sid}/export", response_model=SessionExport)
async def export_session(sid: SessionId, c: ComponentsDep) -> JSONResponse:
    info = await c.history.info(sid)
    messages = await c.history.all_messages(sid)
    summary = await c.summaries.get(sid)
    exported_at = max([info.updated_at, *(m.created_at for m in messages)])
    export = SessionExport(
        session=info, messages=messages, summary=summary, exported_at=exported_at
    )
    disposition = f'attachment; filename="session-{sid}.json"'
    return _json(export, headers={"Content-Disposition": disposition})


@router.post("/sessions/{sid}/context", response_model=ContextResponse)
async def assemble_context(
    sid: SessionId, request: ContextRequest, c: ComponentsDep
) -> ContextResponse:
    return await c.context.assemble(sid, request)


@router.get("/users/{uid}/sessions", response_model=SessionPage)
async def list_sessions(
    uid: UserId, c: ComponentsDep, limit: Limit = 50, offset: Offset = 0
) -> SessionPage:
    sessions, has_more = await c.history.list_for_user(uid, limit=limit, offset=offset)
    return SessionPage(data=sessions, has_more=has_more)


# --- user state ----------------------------------------------------------------------


def _state_response(state: StateDocument, status_code: int = 200) -> Response:
    body = json.dumps(state.doc, ensure_ascii=False)
    return Response(body, status_code, media_type="application/json", headers={"ETag": state.etag})


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Malformed JSON body: {exc}.", code="invalid_json") from None


_STATE_DOCUMENT: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}
# A write answers 200 (replaced) or 201 (created) with the document.
_STATE_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _STATE_DOCUMENT,
    201: _STATE_DOCUMENT,
    **error_responses(409, 412),
}
_STATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.get(
    "/users/{uid}/state",
    response_class=Response,
    responses={
        200: _STATE_DOCUMENT,
        304: {"description": "Unchanged since the ETag given in If-None-Match."},
    },
)
async def get_state(
    uid: UserId,
    c: ComponentsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    state = await c.state.get(uid)
    tags = parse_etags(if_none_match)
    if tags is not None and ("*" in tags or state.etag in tags):
        return Response(status_code=304, headers={"ETag": state.etag})
    return _state_response(state)


@router.put(
    "/users/{uid}/state",
    response_class=Response,
    summary="Replace the state document",
    responses=_STATE_WRITE_RESPONSES,
    openapi_extra=_STATE_BODY,
)
async def put_state(
    uid: UserId,
    request: Request,
    c: ComponentsDep,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    doc = await _json_body(request)
    state, created = await c.state.put(uid, doc, parse_etags(if_match), parse_etags(if_none_match))
    return _state_response(state, 201 if created else 200)


@router.patch(
    "/users/{uid}/state",
    response_class=Response,
    summary="JSON merge patch (RFC 7386)",
    responses=_STATE_WRITE_RESPONSES,
    openapi_extra=_STATE_BODY,
)
async def patch_state(
    uid: UserId,
    request: Request,
    c: ComponentsDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    patch = await _json_body(request)
    state, created = await c.state.patch(uid, patch, parse_etags(if_match))
    return _state_response(state, 201 if created else 200)


@router.delete("/users/{uid}", response_model=ErasureReport)
async def erase_user(uid: UserId, c: ComponentsDep) -> ErasureReport:
    return await c.eraser.erase(uid)


# --- long-term memory ------------------------------------------------------------------


@router.post(
    "/users/{uid}/memories",
    response_model=MemoryAddResponse,
    status_code=201,
    responses={
        200: {"model": MemoryAddResponse, "description": "Merged into a near-duplicate."},
        **error_responses(409),
    },
)
async def add_memory(uid: UserId, request: MemoryAddRequest, c: ComponentsDep) -> JSONResponse:
    memory, event, similarity = await c.memories.add(uid, request.text, request.metadata)
    result = MemoryAddResponse(memory=memory, event=event, similarity=similarity)
    return _json(result, 201 if event == "added" else 200)


@router.post(
    "/users/{uid}/memories/extract",
    response_model=MemoryExtractResponse,
    summary="Extract facts about the user from what they wrote, and store them",
    responses=error_responses(409, 503),
)
async def extract_memories(
    uid: UserId, request: MemoryExtractRequest, c: ComponentsDep
) -> MemoryExtractResponse:
    """The core model finds the facts, under a JSON schema (constrained decoding) in the
    form `MEMORY_EXTRACT_FORM` names (memory_svc/facts.py): by default it keeps the lasting
    facts among the texts' own first-person statements, turned to the third person. Each
    fact, checked (about the user, grounded in the texts, no repeats), is stored as a
    memory like `POST /memories` stores one (merged into a near-duplicate). Texts with
    no first-person word are not sent to the model: they state no fact."""
    try:
        found = await c.facts.extract(request.texts)
    except ExtractionUnavailable as exc:
        raise ServiceUnavailable(
            f"{exc}; try again later, or add the memory itself with POST /memories.",
            code="extraction_unavailable",
        ) from exc
    stored = []
    if request.store:
        for fact in found.facts:
            memory, event, similarity = await c.memories.add(uid, fact, request.metadata)
            stored.append(MemoryAddResponse(memory=memory, event=event, similarity=similarity))
    return MemoryExtractResponse(
        facts=found.facts, stored=stored, dropped=found.dropped, model=found.model
    )


@router.get("/users/{uid}/memories", response_model=MemoryPage)
async def list_memories(
    uid: UserId, c: ComponentsDep, limit: Limit = 50, offset: Offset = 0
) -> MemoryPage:
    memories, total = await c.memories.page(uid, limit=limit, offset=offset)
    return MemoryPage(data=memories, total=total, has_more=offset + len(memories) < total)


@router.post("/users/{uid}/memories/search", response_model=MemorySearchResponse)
async def search_memories(
    uid: UserId, request: MemorySearchRequest, c: ComponentsDep
) -> MemorySearchResponse:
    results = await c.memories.search(uid, request.query, request.k, request.min_score)
    return MemorySearchResponse(results=results)


@router.get("/users/{uid}/memories/{mid}", response_model=Memory)
async def get_memory(uid: UserId, mid: MemoryId, c: ComponentsDep) -> Memory:
    return await c.memories.get(uid, mid)


@router.patch(
    "/users/{uid}/memories/{mid}",
    response_model=Memory,
    responses=error_responses(409),
    operation_id="update_memory",
)
@router.put(
    "/users/{uid}/memories/{mid}",
    response_model=Memory,
    responses=error_responses(409),
    operation_id="replace_memory",
)
async def update_memory(
    uid: UserId, mid: MemoryId, update: MemoryUpdate, c: ComponentsDep
) -> Memory:
    if update.text is None and update.metadata is None:
        raise BadRequest("Give `text`, `metadata` or both to change.", code="empty_update")
    return await c.memories.update(uid, mid, update.text, update.metadata)


@router.delete("/users/{uid}/memories/{mid}", response_model=Deleted)
async def delete_memory(uid: UserId, mid: MemoryId, c: ComponentsDep) -> Deleted:
    await c.memories.delete(uid, mid)
    return Deleted(id=mid)


# --- feedback ------------------------------------------------------------------------------


@router.post(
    "/feedback",
    response_model=Feedback,
    status_code=201,
    responses={
        200: {"model": Feedback, "description": "The rating of this message, replaced."},
        **error_responses(404),
    },
)
async def record_feedback(request: FeedbackRequest, c: ComponentsDep) -> JSONResponse:
    message, before, rejected = await rated_conversation(c.history, request)
    owner = (await c.history.info(request.session_id)).user_id
    feedback, created = await c.feedback.record(request, message, owner, before, rejected)
    return _json(feedback, 201 if created else 200)


@router.get(
    "/feedback/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One JSON object a line: KtoExample (format kto), DpoPair (dpo) "
            "or Feedback (raw).",
            "content": {EXPORT_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **error_responses(403),
    },
)
async def export_feedback(
    c: ComponentsDep,
    format: Annotated[
        FeedbackFormat,
        Query(description="kto: rated answers; dpo: preferred/rejected pairs; raw: records."),
    ] = "kto",
) -> StreamingResponse:
    """The caller's tenant's rated answers as a training set (admin keys only)."""
    if not current_caller().is_admin:
        raise Forbidden(
            "Exporting feedback needs an admin key of the tenant.", code="admin_required"
        )
    lines = export_lines(c.feedback, keys.current(), format)
    return StreamingResponse(lines, media_type=EXPORT_MEDIA_TYPE)


@router.get("/feedback", response_model=FeedbackPage, responses=error_responses(403))
async def list_feedback(
    c: ComponentsDep,
    session_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    rating: Annotated[
        int | None, Query(description="1 or -1", json_schema_extra={"enum": [1, -1]})
    ] = None,
    tenant: Annotated[
        str | None,
        Query(
            pattern=TENANT_PATTERN,
            description="Only this tenant's feedback; another tenant's is for admin keys only "
            "(403). Without it a member lists its own tenant, an admin every tenant.",
        ),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> FeedbackPage:
    if rating not in (None, 1, -1):
        raise BadRequest("rating must be 1 or -1.", param="rating", code="invalid_value")
    items, has_more, counts = await c.feedback.page(
        tenant=listed_tenant(current_caller(), tenant),
        session_id=session_id,
        user_id=user_id,
        rating=rating,
        limit=limit,
        offset=offset,
    )
    return FeedbackPage(data=items, has_more=has_more, counts=counts)
