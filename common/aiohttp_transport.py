"""An httpx transport that does its I/O with aiohttp: httpx's API, a cheaper hot path.

httpcore's connection pool costs about half of a proxying service's CPU per request
(it checks every pooled connection's socket on every request; measured with py-spy on
the gateway). aiohttp's client does the same HTTP/1.1 keep-alive work for a fraction of
that. `ServiceClient` keeps httpx's requests, responses, timeouts and errors; only the
wire moves, and aiohttp's errors become the httpx errors `ServiceClient` maps:

    connection refused / reset before a response   -> httpx.ConnectError
    connect timeout                                -> httpx.ConnectTimeout
    read timeout (no byte within the read timeout) -> httpx.ReadTimeout
    connection lost mid-response                   -> httpx.RemoteProtocolError / ReadError

An unread response that is closed closes its connection (aiohttp never reuses a
connection whose body was not read), so leaving a stream early still cancels the
upstream's work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

# Framing headers aiohttp writes itself from the URL and the body.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@contextmanager
def _mapped(request: httpx.Request, reading: bool) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or "connection lost", request=request) from exc
    except aiohttp.ClientOSError as exc:
        error = httpx.ReadError if reading else httpx.ConnectError
        raise error(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request, reading=True):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Closes the connection unless the body was read to its end (then it is reused).
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (keep-alive pool) per transport, created on first use."""

    def __init__(self, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k not in _OWN_HEADERS]
        with _mapped(request, reading=False):
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                compress=None,
            )
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            # aiohttp's documented grace for its connections to close cleanly
            await asyncio.sleep(0)
