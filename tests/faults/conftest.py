"""One launched platform for the whole folder, moe_svc behind a fault proxy.

The platform is `make up`'s launcher with a tiny model and a two-page wiki (the faults
are about processes and wires, not answers), restart backoff 1 s, no rate limits, and
short chat timeouts so that a stalled moe_svc opens the gateway's circuit in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultPlatform
from tests.faults.proxy import FaultProxy
from tests.helpers.platform import launched
from tests.helpers.servers import free_port
from tests.helpers.tiny_llm import make_tiny_llm

CHAT_TIMEOUT_S = 4.0


def fault_env(proxy: FaultProxy, moe_port: int, model_dir: str) -> dict[str, str]:
    """The launcher's environment: callers reach moe_svc through `proxy`."""
    return {
        "MOE_PORT": str(moe_port),
        "PLATFORM_UPSTREAM_URLS": json.dumps({"moe_svc": proxy.url}),
        "PLATFORM_RESTART_BACKOFF_S": "1",
        "MOE_MODEL_DIR": model_dir,
        "RAG_WIKI_MAX_PAGES": "2",
        "RAG_WIKI_MAX_CHARS_PER_PAGE": "3000",
        "GATEWAY_CHAT_TIMEOUT_S": str(CHAT_TIMEOUT_S),
        # The load runs on one key for minutes: the faults are not about rate limits.
        "GATEWAY_RPM_LIMIT": "0",
        "GATEWAY_TPM_LIMIT": "0",
    }


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultPlatform]:
    var_dir = tmp_path_factory.mktemp("faults")
    moe_port = free_port()
    proxy = FaultProxy(moe_port, free_port())
    proxy.start()
    env = fault_env(proxy, moe_port, str(make_tiny_llm(var_dir / "tiny-llm")))
    try:
        with launched(env, var_dir) as launch:
            faults = FaultPlatform(launch, proxy, CHAT_TIMEOUT_S)
            yield faults
            faults.close()
    finally:
        proxy.stop()
