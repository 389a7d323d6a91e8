"""Every service's OpenAPI documents the error responses its routes really give.

FastAPI documents a 422 for each route with parameters or a body, while the
shared handlers (common/errors.py) answer validation errors with 400 in the
shared error shape; and it documents none of the errors the service raises.
`document_errors` rewrites the generated schema once: the 422s go, and each
operation lists, with the `ErrorResponse` body:

- 400 when it takes parameters or a body (validation, malformed JSON, the
  input guard's limits), 413 and 415 when it takes a body;
- 404 when its path names a resource;
- 503 and 504 on the API routes (`/v1/...`): a model or store not ready, an
  upstream down, slow, or its circuit open;
- at the edge (the gateway), 401, 403 and 429 on every API route: key,
  scope and rate limits come before anything else.

A route adds what only it gives (409, 412, 415, an upstream's 404 on a
path without names, ...) with FastAPI's own `responses=` argument; those
entries are kept and get the shared body.

A route that reads its body by hand (to give better errors than a union
model would) still documents it: `openapi_extra=json_body(ModelA, ModelB)`
names the models it accepts, and their schemas land in the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from common.contracts.errors import ErrorResponse

__all__ = [
    "ERROR_DESCRIPTIONS",
    "document_errors",
    "error_responses",
    "json_body",
    "query_parameters",
]

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: validation, malformed JSON or a refused input.",
    401: "Missing, unknown or revoked API key.",
    403: "The key lacks the scope or role this route needs.",
    404: "Unknown resource (or one the caller may not see).",
    409: "Conflicts with the resource's current state.",
    412: "The If-Match / If-None-Match precondition failed.",
    413: "Request body or a field in it too large.",
    415: "Unsupported content type.",
    429: "Rate limit or concurrency limit reached; see Retry-After.",
    502: "An upstream answered something that is not its contract.",
    503: "Not ready, overloaded, or an upstream is unavailable; see Retry-After when given.",
    504: "An upstream did not answer in time.",
}

_ERROR_REF = "#/components/schemas/ErrorResponse"
_METHODS = ("get", "put", "post", "delete", "patch")
_COMPONENTS = "#/components/schemas/"
# Models named by `json_body`, by name: their schemas are added where a document refers to them.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for a route's own errors, in the shared shape."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def json_body(*models: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its JSON body itself: one of `models`."""
    refs = []
    for model in models:
        _BODY_MODELS[model.__name__] = model
        refs.append({"$ref": _COMPONENTS + model.__name__})
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its query parameters itself, as `model`."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in field.items() if k != "title"},
        }
        for name, field in schema["properties"].items()
    ]
    return {"parameters": parameters}


def _add_component(components: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=_COMPONENTS + "{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)


def _referenced_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        names = {ref.removeprefix(_COMPONENTS)} if isinstance(ref, str) else set()
        return names.union(*(_referenced_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced_names(v) for v in node))
    return set()


def _statuses(path: str, operation: dict[str, Any], edge: bool) -> set[int]:
    takes_input = bool(operation.get("parameters")) or "requestBody" in operation
    statuses = {400} if takes_input else set()
    if "requestBody" in operation:
        statuses |= {413, 415}
    if "{" in path:
        statuses.add(404)
    if path.startswith("/v1/"):
        statuses |= {503, 504}
        if edge:
            statuses |= {401, 403, 429}
    return statuses


def _rewrite(schema: dict[str, Any], edge: bool) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_component(components, ErrorResponse)
    for name in _referenced_names(schema.get("paths", {})) - components.keys():
        if name in _BODY_MODELS:
            _add_component(components, _BODY_MODELS[name])
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in _statuses(path, operation, edge):
                responses.setdefault(str(code), {"description": ERROR_DESCRIPTIONS[code]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {"schema": {"$ref": _ERROR_REF}}}
    return schema


def document_errors(app: FastAPI, *, edge: bool = False) -> None:
    """Make `app.openapi()` list each route's error responses (see the module's doc)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _rewrite(schema, edge)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
