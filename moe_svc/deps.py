"""Dependencies of the routes: the model server of a request, once the models are loaded."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.caller import DEFAULT_TENANT, caller_var
from common.errors import Forbidden, ServiceUnavailable
from common.request_context import current_model_version
from moe_svc.model_pool import ModelPool
from moe_svc.serving import ModelServer

__all__ = ["AdminPoolDep", "PoolDep", "ServerDep", "get_pool", "get_server"]


def get_pool(request: Request) -> ModelPool:
    pool: ModelPool | None = getattr(request.app.state, "model_pool", None)
    if pool is None:
        error = getattr(request.app.state, "model_error", None)
        message = f"The model failed to load: {error}" if error else "The model is still loading."
        raise ServiceUnavailable(message, code="model_loading", headers={"Retry-After": "5"})
    return pool


def get_server(request: Request) -> ModelServer:
    """The current model, or the version the request names (`X-Model-Version`)."""
    return get_pool(request).server(current_model_version())


def get_admin_pool(request: Request) -> ModelPool:
    """The pool, for a change of what serves: the platform's operator only.

    That is a call with no caller headers (the platform itself, an operator on the
    internal network) or an admin of the default tenant through the gateway: model
    versions serve every tenant, so no other tenant's admin may change them.
    """
    caller = caller_var.get()
    if caller is not None and not (caller.role == "admin" and caller.tenant == DEFAULT_TENANT):
        raise Forbidden(
            "Changing the served model versions needs an admin key of the "
            f"'{DEFAULT_TENANT}' tenant (the platform's operator).",
            code="operator_required",
        )
    return get_pool(request)


ServerDep = Annotated[ModelServer, Depends(get_server)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]
AdminPoolDep = Annotated[ModelPool, Depends(get_admin_pool)]
