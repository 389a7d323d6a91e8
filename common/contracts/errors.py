"""The one error shape of every service: the OpenAI error object plus origin."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ErrorDetail", "ErrorResponse"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    # The service where the error arose (kept when it is passed upstream).
    service: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
