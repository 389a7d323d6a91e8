"""One platform for the end-to-end modules: `make up`'s launcher with the real default
model, started once per test session (each start loads every model and builds the
wiki: minutes on a 2-core runner).

The wiki is cut to its first pages (`WIKI_PAGES`) to keep its build short; the
knowledge questions are about those pages. The router's retrieval timeout is raised:
the checks are on sourcing, not speed, and on a busy runner a cited answer
(retrieval, generation, attribution) can pass the 60 s default.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from moe_svc.loader import ensure_default_model
from tests.helpers.platform import Launch, launched
from tests.helpers.servers import REPO_ROOT

WIKI_PAGES = 40


@pytest.fixture(scope="session")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    model_dir = ensure_default_model(REPO_ROOT / "var" / "models")
    env = {
        "MOE_MODEL_DIR": str(model_dir),
        "RAG_WIKI_MAX_PAGES": str(WIKI_PAGES),
        "ROUTER_RAG_TIMEOUT_S": "300",
        # A slow CI machine: a turn may take long, within the gateway's 300 s.
        "ROUTER_TURN_TIMEOUT_S": "290",
    }
    started = time.perf_counter()
    with launched(env, tmp_path_factory.mktemp("platform"), ready_timeout_s=900) as launch:
        print(f"platform ({WIKI_PAGES}-page wiki) ready in {time.perf_counter() - started:.0f} s")
        yield launch


@pytest.fixture(scope="session")
def key(launch: Launch) -> str:
    return (launch.var_dir / "gateway" / "local_api_key").read_text().strip()
