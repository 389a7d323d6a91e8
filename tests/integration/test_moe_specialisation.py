"""moe_svc serving the specialised default model (the committed expert artefact).

The service serves `var/models` as `make up` does: the build there is reused while its
inputs (the committed artefact among them) are unchanged, so this test neither builds
a second copy nor replaces the model that other running services use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moe_svc.build_default import ARTEFACT, MOE_NAME
from moe_svc.specialisation.domains import DOMAINS
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready

pytestmark = pytest.mark.skipif(not ARTEFACT.exists(), reason="no specialisation artefact")

DATA_DIR = REPO_ROOT / "var"
DOMAIN_PROMPTS = {
    "mathematics": "A train travels at 80 km/h for 3 hours and then 25 km more. How far does "
    "it travel in total?\nSolution: distance = speed * time = 80 * 3 = 240 km.",
    "code": "def moving_average(values: list[float], window: int) -> list[float]:\n"
    '    """Return the moving averages of values."""\n    result = []\n'
    "    for i in range(len(values) - window + 1):\n",
    "languages": "Ciao! Come stai oggi? Io sto bene, grazie. Dove vai stasera con i tuoi amici?",
}


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_dir: Path = tmp_path_factory.mktemp("moe_specialised")
    env = {"MOE_DATA_DIR": str(DATA_DIR), "MOE_DTYPE": "float32"}
    server = start_service("moe_svc", log_dir, env=env)
    try:
        wait_ready(server, timeout_s=600)  # first run: build (~1 min) + load
        yield server
    finally:
        server.stop()


def _expert_shares(moe: RunningServer, prompt: str) -> list[float]:
    body = {
        "model": MOE_NAME,
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0,
        "return_experts": True,
    }
    r = httpx.post(moe.url + "/v1/completions", json=body, timeout=120)
    per_layer = r.json()["experts"][0]["per_layer"]
    totals = [sum(layer[e] for layer in per_layer) for e in range(len(per_layer[0]))]
    return [t / sum(totals) for t in totals]


def test_specialised_model_still_answers_paris(moe: RunningServer) -> None:
    body = {
        "model": MOE_NAME,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 32,
        "temperature": 0,
    }
    r = httpx.post(moe.url + "/v1/chat/completions", json=body, timeout=120)
    assert "Paris" in r.json()["choices"][0]["message"]["content"]


def test_routing_follows_the_domain_of_the_text(moe: RunningServer) -> None:
    shares = {domain: _expert_shares(moe, prompt) for domain, prompt in DOMAIN_PROMPTS.items()}
    for domain, share in shares.items():
        # each domain's text goes most to the expert branched on that domain
        assert max(range(len(share)), key=share.__getitem__) == DOMAINS.index(domain), (
            domain,
            share,
        )
    stats = httpx.get(moe.url + "/v1/experts/stats").json()
    assert stats["tokens"] > 0
    # the load is far from uniform (an untrained upcycled router spreads it evenly)
    assert stats["mean_entropy"] < 0.95
