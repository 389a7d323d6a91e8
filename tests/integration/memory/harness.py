"""Starting memory_svc and its fake upstreams for the memory integration tests (this folder)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from memory_svc.tokenizer_file import build_tokenizer_json, smollm2_gguf_path
from tests.helpers.servers import RunningServer, free_port, start_module, start_service

__all__ = ["shared_tokenizer", "start_fakes", "start_memory"]


def shared_tokenizer() -> Path:
    """The core model's tokenizer.json, converted once per machine for every test run.

    memory_svc builds it on its first start (seconds); sharing it keeps each
    test's service start fast. The write is atomic, so concurrent runs are safe.
    """
    gguf = smollm2_gguf_path()
    target = Path(tempfile.gettempdir()) / f"memory-svc-tokenizer-{gguf.stat().st_mtime_ns}.json"
    if not target.exists():
        build_tokenizer_json(gguf, target)
    return target


def start_fakes(log_dir: Path, name: str = "fakes", **env: str) -> RunningServer:
    """The fake rag_svc embeddings and moe_svc chat/tokenize (tests/helpers/memory_fakes)."""
    port = free_port()
    return start_module(
        "tests.helpers.memory_fakes",
        name=name,
        port=port,
        env={"FAKE_PORT": str(port), "FAKE_TOKENIZER": str(shared_tokenizer()), **env},
        log_dir=log_dir,
    )


def start_memory(
    log_dir: Path,
    redis_url: str,
    *,
    rag_url: str | None = None,
    moe_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """memory_svc on a free port; upstreams not given point where nothing listens."""
    upstreams = {
        name: url for name, url in (("rag_svc", rag_url), ("moe_svc", moe_url)) if url is not None
    }
    return start_service(
        "memory_svc",
        log_dir,
        upstreams=upstreams,
        env={
            "MEMORY_REDIS_URL": redis_url,
            "MEMORY_TOKENIZER_FILE": str(shared_tokenizer()),
            "MEMORY_LOG_JSON": "false",
            **(env or {}),
        },
    )
