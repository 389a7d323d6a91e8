"""Who may read and write which collection: the caller's own first, then the shared ones.

- A tenant's own collections are its alone: to any other tenant they do not
  exist (absent from the list, 404 on every call, exactly as for a name
  nobody uses).
- Shared collections (`wiki`, and any an admin shares) are read by every
  tenant and changed by admins only (403 for a member).
- A name means the caller's own collection when it has one, else the shared
  collection of that name. A new collection may not take a shared name
  (409), so a shared collection is hidden only where an admin shared a name
  that a tenant already used.
- Reading needs the `documents:read` scope, writing `documents:write` (403).
- The default collections (RAG_DEFAULT_COLLECTIONS: `docs`) are every tenant's
  own, created empty the first time the tenant reaches them; they are never
  shared, so a tenant's `docs` is never another's.
"""

from __future__ import annotations

import re
from typing import Any

from common.caller import Caller
from common.contracts.rag import DOCUMENT_ID_PATTERN
from common.errors import BadRequest, Conflict, Forbidden
from rag_svc.layout import CollectionRef
from rag_svc.library import Library, collection_not_found, validate_collection_name

__all__ = [
    "READ_SCOPE",
    "WRITE_SCOPE",
    "collection_to_create",
    "list_collections",
    "readable",
    "set_shared",
    "validate_document_id",
    "writable",
]

READ_SCOPE = "documents:read"
WRITE_SCOPE = "documents:write"

_DOCUMENT_ID = re.compile(DOCUMENT_ID_PATTERN)


def validate_document_id(document_id: str) -> str:
    if not _DOCUMENT_ID.fullmatch(document_id):
        raise BadRequest(
            f"Invalid document id {document_id!r}: 1-256 characters, no control "
            "character and no '/'.",
            param="id",
            code="invalid_document_id",
        )
    return document_id


def _require_scope(caller: Caller, scope: str) -> None:
    if not caller.allows(scope):
        raise Forbidden(
            f"This API key lacks the `{scope}` scope.", code="missing_scope", param="scope"
        )


def _require_admin(caller: Caller, name: str, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(
            f"Only an admin key may {action} the shared collection {name!r}.",
            param="name",
            code="admin_required",
        )


def _resolve(library: Library, caller: Caller, name: str) -> CollectionRef:
    library.require_models()  # until then every stored collection would read as missing
    if name in library.settings.default_collections:
        library.ensure_default_collections(caller.tenant)
    ref = library.find(caller.tenant, name)
    if ref is None:
        raise collection_not_found(name)
    return ref


def readable(library: Library, caller: Caller, name: str) -> CollectionRef:
    """The collection `name` means to the caller, for a search, an answer or a read."""
    validate_collection_name(name)
    _require_scope(caller, READ_SCOPE)
    return _resolve(library, caller, name)


def writable(library: Library, caller: Caller, name: str) -> CollectionRef:
    """The collection `name` means to the caller, for an ingest or a delete."""
    validate_collection_name(name)
    _require_scope(caller, WRITE_SCOPE)
    ref = _resolve(library, caller, name)
    if ref.shared:
        _require_admin(caller, name, "change")
    return ref


def collection_to_create(
    library: Library, caller: Caller, name: str, shared: bool
) -> CollectionRef:
    """Where a new collection goes: the caller's tenant, or shared (admins only)."""
    validate_collection_name(name)
    _require_scope(caller, WRITE_SCOPE)
    if not shared:
        return CollectionRef(name, caller.tenant)
    _require_admin(caller, name, "create")
    _refuse_default_name(library, name)
    return CollectionRef(name, None)


def list_collections(library: Library, caller: Caller) -> list[dict[str, Any]]:
    _require_scope(caller, READ_SCOPE)
    library.require_models()
    library.ensure_default_collections(caller.tenant)
    return library.list_collections(caller.tenant)


def set_shared(library: Library, caller: Caller, name: str, shared: bool) -> dict[str, Any]:
    """Share the caller's own collection `name`, or take the shared one back (admins only).

    A collection taken back becomes the admin's tenant's own.
    """
    validate_collection_name(name)
    _require_scope(caller, WRITE_SCOPE)
    ref = _resolve(library, caller, name)
    if not caller.is_admin:
        # A member learns nothing more than a read shows: the collection exists for it.
        raise Forbidden(
            "Only an admin key may share a collection or take one back.",
            param="shared",
            code="admin_required",
        )
    if ref.shared == shared:
        return library.info(ref)
    if shared:
        _refuse_default_name(library, name)
    return library.move_collection(ref, CollectionRef(name, None if shared else caller.tenant))


def _refuse_default_name(library: Library, name: str) -> None:
    if name in library.settings.default_collections:
        raise Conflict(
            f"{name!r} is a default collection that every tenant owns; it cannot be shared.",
            param="name",
            code="default_collection",
        )
