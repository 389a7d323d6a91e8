"""The server-sent events of router_svc's `POST /v1/dispatch` with `stream: true`.

Each event is `data: <json>` and a blank line, in this order: one `RouteEvent`
(the router's decision), a `StepEvent` after every finished step and a
`DeltaEvent` for each piece of the answer as it is made, then a `DoneEvent`
(the whole `DispatchResponse`) or an `ErrorEvent`, then `data: [DONE]`.
`DISPATCH_EVENT` parses one event's JSON into its model by `type`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from common.contracts.errors import ErrorDetail
from common.contracts.openai import ChoiceLogprobs, DeltaToolCall
from common.contracts.router import DispatchResponse, PipelineStep, RouteResponse

__all__ = [
    "DISPATCH_EVENT",
    "DeltaEvent",
    "DispatchEvent",
    "DoneEvent",
    "ErrorEvent",
    "RouteEvent",
    "StepEvent",
]


class RouteEvent(RouteResponse):
    """The intent, its scores and the plan, before any step runs."""

    type: Literal["route"] = "route"


class StepEvent(BaseModel):
    type: Literal["step"] = "step"
    step: PipelineStep


class DeltaEvent(BaseModel):
    """A piece of the answer; the pieces of a choice in order make its text (and its tool
    calls, as OpenAI streams them). Each choice's `finish_reason` is in the `done` event."""

    type: Literal["delta"] = "delta"
    # The choice it belongs to (more than one only when the core model answers with `n`).
    index: int = 0
    content: str = ""
    tool_calls: list[DeltaToolCall] | None = None
    logprobs: ChoiceLogprobs | None = None


class DoneEvent(DispatchResponse):
    """The answer and its pipeline, as `POST /v1/dispatch` answers without a stream."""

    type: Literal["done"] = "done"


class ErrorEvent(BaseModel):
    """The plan failed after the stream began: the shared error object and its HTTP status."""

    type: Literal["error"] = "error"
    error: ErrorDetail
    status: int


DispatchEvent = Annotated[
    RouteEvent | StepEvent | DeltaEvent | DoneEvent | ErrorEvent, Field(discriminator="type")
]
DISPATCH_EVENT: TypeAdapter[DispatchEvent] = TypeAdapter(DispatchEvent)
