"""Starting rag_svc for the integration tests, and small files to upload to it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.helpers.servers import RunningServer, free_port, start_module, start_service, wait_ready

__all__ = ["minimal_pdf", "start_fake_moe", "start_rag"]


def start_fake_moe(log_dir: Path) -> RunningServer:
    """The scripted chat server (tests.helpers.rag_fake_moe) standing in for moe_svc."""
    port = free_port()
    return start_module(
        "tests.helpers.rag_fake_moe",
        name="fake_moe",
        port=port,
        env={"FAKE_MOE_PORT": str(port)},
        log_dir=log_dir,
    )


def start_rag(
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    upstreams: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
) -> RunningServer:
    """A real rag_svc (wiki off unless `env` says) that is ready to serve."""
    full_env = {"RAG_WIKI_ENABLED": "false", "RAG_LOG_JSON": "true"}
    if data_dir is not None:
        full_env["RAG_DATA_DIR"] = str(data_dir)
    full_env.update(env or {})
    server = start_service("rag_svc", log_dir, upstreams=upstreams, env=full_env)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds `lines` (Helvetica, no compression)."""
    text_ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({escaped}) Tj T*")
    text_ops.append("ET")
    stream = "\n".join(text_ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
