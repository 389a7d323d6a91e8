"""Fakes for tools_svc's unit tests: a resolver and a transport that record and
block every connection to anything but loopback, fake pages, a sandbox that is off.

Nothing here opens a socket: loopback requests are answered by a handler.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from fastapi import FastAPI

from tools_svc.sandbox import PythonSandbox


class AppClient(httpx.AsyncClient):
    """A client of the app over ASGI that keeps the app, for tests that reach into its state."""

    app: FastAPI


# `async with app_client(settings, **create_app_overrides) as client` (conftest).
AppFactory = Callable[..., AbstractAsyncContextManager[AppClient]]


class RecordingResolver:
    """DNS answers from a table; records every query and never asks real DNS."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.queries.append(host)
        if host not in self.answers:
            raise OSError(f"no test answer for {host}")
        return self.answers[host]


class GuardTransport(httpx.AsyncBaseTransport):
    """Records every attempted request; refuses (raises) any that is not to loopback.

    Loopback requests are answered by `handler`, so even a broken guard in the
    code under test could reach nothing.
    """

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.attempts: list[tuple[str, str]] = []  # (connected host, Host header)

    @property
    def non_loopback_attempts(self) -> list[tuple[str, str]]:
        return [a for a in self.attempts if not ipaddress.ip_address(a[0]).is_loopback]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.attempts.append((host, request.headers.get("host", "")))
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a name: the code under test should never send one
        if not loopback:
            raise httpx.ConnectError(f"blocked by the test: a connection to {host}")
        return self.handler(request)


def pages(request: httpx.Request) -> httpx.Response:
    """The fake site on loopback: text, redirects, binary, big bodies."""
    path = request.url.path
    if path == "/page":
        return httpx.Response(
            200, text="hello from loopback", headers={"content-type": "text/plain"}
        )
    if path == "/redirect":
        return httpx.Response(302, headers={"location": request.url.params["to"]})
    if path == "/loop":
        return httpx.Response(302, headers={"location": "/loop"})
    if path == "/image":
        return httpx.Response(200, content=b"\x89PNG...", headers={"content-type": "image/png"})
    if path == "/big":
        return httpx.Response(200, text="x" * 50_000, headers={"content-type": "text/plain"})
    if path == "/missing":
        return httpx.Response(404, text="no such page", headers={"content-type": "text/html"})
    return httpx.Response(500, text="unexpected path")


class NoSandbox(PythonSandbox):
    """A sandbox whose probe runs nothing: unit tests of other tools need no jail."""

    async def probe(self) -> None:
        self.unavailable_reason = "disabled in unit tests"
