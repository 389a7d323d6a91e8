"""Every kind of error leaves a service in the shared shape with the right status."""

from __future__ import annotations

from typing import ClassVar

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from common.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UpstreamError,
)
from common.service import create_service_app
from common.settings import ServiceSettings

ERROR_KEYS = {"message", "type", "param", "code", "service", "request_id"}


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo_svc"
    port: int = 1

    def upstream_urls(self) -> dict[str, str]:
        return {}


class Message(BaseModel):
    role: str
    content: str


class ChatBody(BaseModel):
    model: str
    messages: list[Message]
    temperature: float = Field(1.0, ge=0, le=2)


def build_app() -> FastAPI:
    app = create_service_app(DemoSettings(), title="demo")

    @app.post("/v1/chat")
    async def chat(body: ChatBody) -> dict[str, int]:
        return {"messages": len(body.messages)}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise NotFound("item 0 does not exist", code="item_not_found", param="item_id")
        return {"id": item_id}

    @app.get("/raise/{kind}")
    async def raise_kind(kind: str) -> None:
        errors = {
            "unauthorized": Unauthorized("missing API key"),
            "conflict": Conflict("exists"),
            "precondition": PreconditionFailed("etag mismatch"),
            "ratelimited": RateLimited("slow down", headers={"Retry-After": "3"}),
            "unavailable": ServiceUnavailable("model loading"),
            "upstream": UpstreamError(
                "bad model",
                status_code=400,
                error_type="invalid_request_error",
                origin="moe_svc",
                code="model_not_found",
                request_id="up-rid",
            ),
        }
        raise errors[kind]

    @app.get("/crash")
    async def crash() -> None:
        raise ValueError("db password=hunter2 leaked")

    return app


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app())
    return httpx.AsyncClient(transport=transport, base_url="http://demo")


def assert_error_shape(response: httpx.Response, status: int, error_type: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["type"] == error_type
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    return dict(body["error"])


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_error_shape(response, 400, "invalid_request_error")
    assert error["message"].startswith("Malformed JSON body")
    assert error["code"] == "invalid_json"
    assert error["service"] == "demo_svc"


async def test_validation_error_is_400_with_param(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat", json={"model": "x", "messages": [{"role": "user"}], "temperature": 1}
    )
    error = assert_error_shape(response, 400, "invalid_request_error")
    assert error["param"] == "messages.0.content"
    assert "messages.0.content" in error["message"]


async def test_out_of_range_value_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat", json={"model": "x", "messages": [], "temperature": 9})
    assert assert_error_shape(response, 400, "invalid_request_error")["param"] == "temperature"


async def test_bad_path_parameter_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/abc")
    assert assert_error_shape(response, 400, "invalid_request_error")["param"] == "item_id"


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/nothing")
    error = assert_error_shape(response, 404, "not_found_error")
    assert error["message"] == "Unknown route: GET /v2/nothing"


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/chat")
    assert_error_shape(response, 405, "invalid_request_error")
    assert response.headers["allow"] == "POST"


async def test_service_error_keeps_status_code_and_param(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/0", headers={"X-Request-ID": "rid-42"})
    error = assert_error_shape(response, 404, "not_found_error")
    assert error == {
        "message": "item 0 does not exist",
        "type": "not_found_error",
        "param": "item_id",
        "code": "item_not_found",
        "service": "demo_svc",
        "request_id": "rid-42",
    }


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("unauthorized", 401, "authentication_error"),
        ("conflict", 409, "conflict_error"),
        ("precondition", 412, "precondition_failed"),
        ("ratelimited", 429, "rate_limit_error"),
        ("unavailable", 503, "service_unavailable"),
    ],
)
async def test_domain_errors_carry_their_status(
    client: httpx.AsyncClient, kind: str, status: int, error_type: str
) -> None:
    response = await client.get(f"/raise/{kind}")
    assert_error_shape(response, status, error_type)
    if kind == "ratelimited":
        assert response.headers["retry-after"] == "3"


async def test_upstream_error_is_reraised_with_its_origin(client: httpx.AsyncClient) -> None:
    response = await client.get("/raise/upstream")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["service"] == "moe_svc"
    assert error["code"] == "model_not_found"
    assert error["request_id"] == "up-rid"


async def test_unhandled_exception_is_generic_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/crash")
    error = assert_error_shape(response, 500, "server_error")
    assert "hunter2" not in response.text
    assert "ValueError" not in response.text
    assert error["code"] == "internal_error"
    # The stack trace goes to the log only.
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


async def test_no_bare_detail_body_leaves_the_service(client: httpx.AsyncClient) -> None:
    for response in [
        await client.get("/nope"),
        await client.post("/v1/chat", json=[]),
        await client.put("/healthz"),
    ]:
        assert "detail" not in response.json()
        assert "error" in response.json()
