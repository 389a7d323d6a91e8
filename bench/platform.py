"""A platform for a benchmark run: the one `make up` starts, launched on free loopback ports.

`launched_platform(env, prefix)` runs `python -m launcher` with the default model
and `env` in a temporary var dir, waits until the gateway is ready (minutes the
first time: models load, the wiki is built), yields the launch and its local API
key, and stops it afterwards. `service_urls(gateway)` maps each service to its URL
on the same host: the launcher keeps the topology's port offsets from the gateway.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.topology import SERVICES
from tests.helpers.platform import Launch, launched
from tests.helpers.servers import REPO_ROOT

__all__ = ["launched_platform", "service_urls"]


@contextmanager
def launched_platform(env: dict[str, str], prefix: str) -> Iterator[tuple[Launch, str]]:
    """(the launch, its local API key), stopped when the block ends."""
    from moe_svc.loader import ensure_default_model

    env = {**env, "MOE_MODEL_DIR": str(ensure_default_model(REPO_ROOT / "var" / "models"))}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        print("launching the platform (minutes: models load, the wiki is built) ...", flush=True)
        with launched(env, Path(tmp), ready_timeout_s=900) as launch:
            key = (launch.var_dir / "gateway" / "local_api_key").read_text().strip()
            yield launch, key


def service_urls(gateway: str) -> dict[str, str]:
    """Each service's base URL, from the gateway's (`http://127.0.0.1:<port>`)."""
    base = int(gateway.rstrip("/").rsplit(":", 1)[1]) - SERVICES["gateway"].port
    return {name: f"http://127.0.0.1:{base + spec.port}" for name, spec in SERVICES.items()}
