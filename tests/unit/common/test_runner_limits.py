"""The server limits of common/runner.py, on a real uvicorn over raw sockets.

Each test talks to a uvicorn that runs the services' protocol with short
timeouts, the way a slow or hostile client would: oversized or too many
headers, headers or a body sent a byte at a time, a connection left idle.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from common.runner import server_options
from common.settings import ServiceSettings
from tests.helpers.servers import free_port

TIMEOUT_S = 0.6  # header, body and keep-alive timeouts of the server under test
SLACK_S = 2.0  # how late a close may come on a busy CI machine


class LimitSettings(ServiceSettings):
    service_name: ClassVar[str] = "limits_test"
    port: int = 0


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the length of the request body it read."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"received": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    settings = LimitSettings(
        port=free_port(),
        http_max_header_bytes=4096,
        http_max_headers=20,
        http_header_timeout_s=TIMEOUT_S,
        http_body_timeout_s=TIMEOUT_S,
        http_keepalive_timeout_s=TIMEOUT_S,
    )
    config = uvicorn.Config(echo_length, loop="asyncio", lifespan="off", **server_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield settings.host, settings.port
    server.should_exit = True
    thread.join(10)


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=TIMEOUT_S + SLACK_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection open."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, read whole; the connection stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_and_error(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"] if body else {}


def test_a_plain_request_is_served_and_the_connection_kept(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
            response = read_response(sock)
            assert response.startswith(b"HTTP/1.1 200")
            assert response.endswith(b'{"received": 3}')


def test_headers_over_the_size_limit_get_431(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert error["code"] == "headers_too_large"
    assert error["service"] == "limits_test"


def test_a_16_mb_header_is_cut_off_long_before_its_end(server: tuple[str, int]) -> None:
    sent = 0
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Huge: ")
        chunk = b"a" * 65536
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            while sent < 16 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        response = read_until_closed(sock)
    assert sent < 16 * 1024 * 1024, "the server read a 16 MB header to its end"
    assert response == b"" or response.startswith(b"HTTP/1.1 431")


def test_too_many_header_fields_get_431(server: tuple[str, int]) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(30))
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
        status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert "20 fields" in str(error["message"])


def test_headers_sent_slowly_are_cut_off_with_408(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(int((TIMEOUT_S + SLACK_S) / 0.1)):
                sock.sendall(b"X")  # one byte of a header name, forever
                time.sleep(0.1)
                if time.monotonic() - started > TIMEOUT_S + 0.3:
                    break
        status, error = status_and_error(read_until_closed(sock))
    assert status == 408
    assert error["code"] == "request_timeout"
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        assert read_until_closed(sock) == b""
    assert TIMEOUT_S - 0.1 < time.monotonic() - started < TIMEOUT_S + SLACK_S


def test_a_trickling_body_is_cut_off_with_408(server: tuple[str, int]) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < TIMEOUT_S + 0.3:
                sock.sendall(b"x")  # a byte every 50 ms: never idle, never done
                time.sleep(0.05)
        status, error = status_and_error(read_until_closed(sock))
    assert status == 408
    assert "body" in str(error["message"])
    assert time.monotonic() - started < TIMEOUT_S + SLACK_S


def test_an_idle_keep_alive_connection_is_closed(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        idle_from = time.monotonic()
        assert read_until_closed(sock) == b""
    assert time.monotonic() - idle_from < TIMEOUT_S + SLACK_S


@pytest.mark.parametrize(
    "header",
    [b"X-Bad: a\x00b", b"X-Bad: a\rb", b"X Bad: v", b"X-Bad: \xff\xfe"],
    ids=["nul", "bare-cr", "space-in-name", "not-latin"],
)
def test_malformed_header_fields_get_400_in_the_error_shape(
    server: tuple[str, int], header: bytes
) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n\r\n")
        response = read_until_closed(sock)
    if header.endswith(b"\xff\xfe"):
        # obs-text is legal in a field value: served, not a crash.
        assert response.startswith(b"HTTP/1.1 200")
        return
    status, error = status_and_error(response)
    assert status == 400
    assert error["type"] == "invalid_request_error"


def test_server_options_carry_the_settings() -> None:
    settings = LimitSettings(http_keepalive_timeout_s=7.5, http_max_concurrency=50)
    options = server_options(settings)
    assert options["timeout_keep_alive"] == 7.5
    assert options["limit_concurrency"] == 50
    assert options["h11_max_incomplete_event_size"] == settings.http_max_header_bytes
    assert options["http"].limits.header_timeout_s == settings.http_header_timeout_s
    assert options["http"].limits.service == "limits_test"
