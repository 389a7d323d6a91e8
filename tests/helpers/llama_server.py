"""llama.cpp's OpenAI-compatible server (llama-cpp-python's `llama_cpp.server`) as a
foreign engine for the tests: the SmolLM2 GGUF the platform installs, on a free
loopback port, its access log kept so a test can count the calls it answered."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.assets import smollm2_gguf_path

__all__ = ["LlamaServer", "start_llama_server"]


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    url: str  # the API root, ending in /v1
    alias: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def completions_answered(self) -> int:
        """Chat completions the server answered with 200 (from its access log)."""
        return self.log().count('"POST /v1/chat/completions HTTP/1.1" 200')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llama_server(
    log_dir: Path, alias: str = "smollm2-q4", model: Path | None = None, timeout_s: float = 120
) -> LlamaServer:
    """Start the server and wait until it lists its model (AssertionError with its log)."""
    port = _free_port()
    log_path = log_dir / "llama-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model or smollm2_gguf_path()),
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "2",
                "--n_ctx",
                "4096",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LlamaServer(process, f"http://127.0.0.1:{port}/v1", alias, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"llama.cpp's server exited:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise AssertionError(f"llama.cpp's server did not start in {timeout_s}s:\n{server.log()}")
