"""`/v1/admin/rollout`: try a tuned core-model version on a share of the traffic, then
promote it or roll it back (the platform operator's admin keys only).

- `GET /v1/admin/rollout`: the running rollout with its counts per version (answers,
  ratings, up rate, p-value of the difference), moe_svc's versions, the past rollouts.
- `PUT /v1/admin/rollout` `{candidate, share, tenants}`: moe_svc loads the candidate
  beside the current model (a minute for the default model), then the rollout starts;
  the same candidate again changes its share and tenants.
- `POST /v1/admin/rollout/promote`: the candidate becomes moe_svc's current model (only
  when its eval gate passed: moe_svc answers 409 otherwise); the rollout ends.
- `POST /v1/admin/rollout/rollback`: a running rollout ends and moe_svc stops serving
  the candidate; with none running, the last promotion is undone.

`python -m gateway.rollout` runs these from a shell (`gateway/rollout.py`).
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from common.caller import DEFAULT_TENANT, current_caller
from common.contracts.model_versions import ServedVersions
from common.errors import Conflict, Forbidden, NotFound
from common.http_client import ServiceClient
from common.openapi import error_responses, json_body
from gateway.deps import SettingsDep, UpstreamsDep, authorize
from gateway.passthrough import read_json, upstream_path
from gateway.rollout_store import Rollout, RolloutRequest, RolloutStats, RolloutStore

__all__ = ["RolloutStatus", "get_rollouts", "router"]

router = APIRouter(prefix="/v1/admin/rollout", tags=["rollout"])


class RolloutStatus(BaseModel):
    active: RolloutStats | None = Field(description="The running rollout; null: none runs.")
    models: ServedVersions = Field(description="moe_svc's versions: on disk, loaded, current.")
    history: list[dict[str, Any]] = Field(
        description="Ended rollouts, newest first: outcome, final counts."
    )


def get_rollouts(request: Request) -> RolloutStore:
    store: RolloutStore = request.app.state.rollouts
    return store


RolloutsDep = Annotated[RolloutStore, Depends(get_rollouts)]


def _operator() -> None:
    """Model versions serve every tenant: only the operator (an admin of tenant
    `default`) may change them."""
    caller = current_caller()
    if not (caller.is_admin and caller.tenant == DEFAULT_TENANT):
        raise Forbidden(
            "Rolling out model versions needs an admin key of the "
            f"'{DEFAULT_TENANT}' tenant (the platform's operator).",
            code="operator_required",
        )


_OPERATOR = [authorize(None), Depends(_operator)]


def _moe(upstreams: UpstreamsDep) -> ServiceClient:
    return upstreams["moe_svc"]


async def _versions(moe: ServiceClient, settings: SettingsDep) -> ServedVersions:
    return ServedVersions.model_validate(
        await moe.get_json("/v1/versions", timeout_s=settings.passthrough_timeout_s)
    )


async def _status(store: RolloutStore, moe: ServiceClient, settings: SettingsDep) -> RolloutStatus:
    rollout = await store.active(fresh=True)
    return RolloutStatus(
        active=await store.stats(rollout) if rollout is not None else None,
        models=await _versions(moe, settings),
        history=await store.history(),
    )


@router.get("", dependencies=_OPERATOR, responses=error_responses(403))
async def rollout_status(
    store: RolloutsDep, upstreams: UpstreamsDep, settings: SettingsDep
) -> RolloutStatus:
    return await _status(store, _moe(upstreams), settings)


@router.put(
    "",
    dependencies=_OPERATOR,
    responses=error_responses(403, 404, 409),
    openapi_extra=json_body(RolloutRequest),
)
async def start_rollout(
    request: Request, store: RolloutsDep, upstreams: UpstreamsDep, settings: SettingsDep
) -> RolloutStatus:
    try:
        wanted = RolloutRequest.model_validate(await read_json(request))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    moe = _moe(upstreams)
    running = await store.active(fresh=True)
    if running is not None and running.candidate != wanted.candidate:
        raise Conflict(
            f"A rollout of {running.candidate!r} is running: promote it or roll it back first.",
            code="rollout_running",
        )
    current = (await _versions(moe, settings)).current
    if wanted.candidate == current:
        raise Conflict(
            f"{wanted.candidate!r} is already the current model.", code="already_current"
        )
    path = upstream_path("/v1/versions/{version}/load", version=wanted.candidate)
    # Loading is idempotent, and may take a minute for the default model.
    await moe.request("POST", path, timeout_s=settings.rollout_load_timeout_s, idempotent=True)
    rollout = Rollout(
        **wanted.model_dump(),
        id=running.id if running is not None else f"{int(time.time())}-{secrets.token_hex(4)}",
        baseline=current,
        started=running.started if running is not None else int(time.time()),
    )
    await store.start(rollout)
    return await _status(store, moe, settings)


@router.post("/promote", dependencies=_OPERATOR, responses=error_responses(403, 404, 409))
async def promote(
    store: RolloutsDep, upstreams: UpstreamsDep, settings: SettingsDep
) -> RolloutStatus:
    rollout = await store.active(fresh=True)
    if rollout is None:
        raise NotFound("No rollout is running: start one first.", code="no_rollout")
    moe = _moe(upstreams)
    path = upstream_path("/v1/versions/{version}/promote", version=rollout.candidate)
    # moe_svc refuses (409) a candidate whose eval gate did not pass: the rollout goes on.
    await moe.request("POST", path, timeout_s=settings.rollout_load_timeout_s)
    await store.end(rollout, "promoted")
    return await _status(store, moe, settings)


@router.post("/rollback", dependencies=_OPERATOR, responses=error_responses(403, 409))
async def rollback(
    store: RolloutsDep, upstreams: UpstreamsDep, settings: SettingsDep
) -> RolloutStatus:
    rollout = await store.active(fresh=True)
    moe = _moe(upstreams)
    if rollout is not None:
        # Traffic first: no request is assigned the candidate once it is unloaded.
        await store.end(rollout, "rolled_back")
        path = upstream_path("/v1/versions/{version}", version=rollout.candidate)
        await moe.request("DELETE", path, timeout_s=settings.passthrough_timeout_s)
    else:
        await moe.request(
            "POST", "/v1/versions/rollback", timeout_s=settings.rollout_load_timeout_s
        )
    return await _status(store, moe, settings)
