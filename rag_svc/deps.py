"""Dependency aliases of the routes: the services, and the collection a path names."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from common.caller import Caller, current_caller
from rag_svc import access
from rag_svc.answering import Answerer
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.settings import RagSettings

__all__ = [
    "AnswererDep",
    "CallerDep",
    "DocumentIdDep",
    "LibraryDep",
    "ReadableDep",
    "SettingsDep",
    "WritableDep",
]


def get_library(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


def get_answerer(request: Request) -> Answerer:
    answerer: Answerer = request.app.state.answerer
    return answerer


def get_settings(request: Request) -> RagSettings:
    settings: RagSettings = request.app.state.settings
    return settings


async def get_caller() -> Caller:
    return current_caller()


LibraryDep = Annotated[Library, Depends(get_library)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
SettingsDep = Annotated[RagSettings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(get_caller)]


# A thread: reaching a tenant's default collection the first time creates it on disk.
async def readable_collection(name: str, library: LibraryDep, caller: CallerDep) -> CollectionRef:
    return await asyncio.to_thread(access.readable, library, caller, name)


async def writable_collection(name: str, library: LibraryDep, caller: CallerDep) -> CollectionRef:
    return await asyncio.to_thread(access.writable, library, caller, name)


async def document_id(doc_id: str) -> str:
    return access.validate_document_id(doc_id)


# The collection `{name}` of the path means to the caller (404, 403 or 400 otherwise).
ReadableDep = Annotated[CollectionRef, Depends(readable_collection)]
WritableDep = Annotated[CollectionRef, Depends(writable_collection)]
DocumentIdDep = Annotated[str, Depends(document_id)]
