"""A loopback TCP proxy in front of one service that can turn slow or answer garbage.

The launcher points every caller of the service at the proxy
(`PLATFORM_UPSTREAM_URLS`); the service itself still listens on its own port,
where the launcher's readiness check and restarts reach it directly.

Modes, switched at any time from another thread:

- `pass`: bytes go both ways untouched;
- `slow`: each request's bytes wait `delay_s` before they reach the service
  (a stalled upstream: callers see their timeouts, not an error);
- `garbage`: every request is answered `200` with a body that is not the
  service's contract (not even JSON), and the connection closed.

Switching mode drops the open connections, so pooled keep-alive connections
cannot bypass the new mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

__all__ = ["GARBAGE_BODY", "FaultProxy", "Mode"]

Mode = Literal["pass", "slow", "garbage"]

GARBAGE_BODY = b"\x00\x17<html>upstream exploded \xff\xfe"
_GARBAGE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(GARBAGE_BODY), GARBAGE_BODY)
)


class FaultProxy:
    """Runs on its own event loop in a daemon thread; `url` is what callers use."""

    def __init__(self, target_port: int, port: int, delay_s: float = 30.0) -> None:
        self.target_port = target_port
        self.port = port
        self.delay_s = delay_s
        self.mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        future.result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_mode(self, mode: Mode) -> None:
        """Switch mode and drop every open connection (they reconnect into the new mode)."""

        async def switch() -> None:
            self.mode = mode
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(10)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Connections still held (a slow mode's sleeps) end here, not with the loop.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.mode == "garbage":
                await self._answer_garbage(reader, writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                return  # the service is down: the caller sees its connection closed
            self._writers.add(up_writer)
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer, delay=True), self._pipe(up_reader, writer)
                )
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Cancelled by `stop()`: end quietly (asyncio's stream callback reports a
            # cancelled connection task as an error).
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: bool = False
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if delay and self.mode == "slow":
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _answer_garbage(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                await reader.readexactly(int(value.strip()))
        writer.write(_GARBAGE_ANSWER)
        await writer.drain()
