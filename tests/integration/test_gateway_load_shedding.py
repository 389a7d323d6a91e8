"""Load past moe_svc's capacity, through the gateway, is shed: 503 `overloaded` with
Retry-After, quickly, streamed or not, while the admitted requests answer 200.

moe_svc serves the dense SmolLM2 of the default build with one batch row, a queue of two
and a queue deadline of 0.3 s: one long stream holds the row while a burst arrives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from moe_svc.build_default import DENSE_NAME, build
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import gateway_stack

QUEUE_WAIT_S = 0.3


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(gateway URL, moe_svc URL)."""
    log_dir = tmp_path_factory.mktemp("gateway_load_shedding")
    model_dir = build(REPO_ROOT / "var" / "models").parent / DENSE_NAME
    moe_url: list[str] = []

    def moe(_: RunningServer) -> RunningServer:
        env = {
            "MOE_MODEL_DIR": str(model_dir),
            "MOE_DTYPE": "float32",
            "MOE_MAX_BATCH_SIZE": "1",
            "MOE_MAX_QUEUE": "2",
            "MOE_MAX_QUEUE_WAIT_S": str(QUEUE_WAIT_S),
        }
        server = start_service("moe_svc", log_dir, env=env)
        wait_ready(server, timeout_s=600)
        moe_url.append(server.url)
        return server

    with gateway_stack(log_dir, real={"moe_svc": moe}) as (gw, _, _):
        yield gw.url, moe_url[0]


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": DENSE_NAME,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "temperature": 0,
        **extra,
    }


def _post(gateway: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    """The answer (a stream's status and headers, its body read) and how long it took."""
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body, timeout=60) as r:
        r.read()
    return r, time.monotonic() - started


def _metric(moe: str, name: str) -> float:
    text = httpx.get(f"{moe}/metrics", timeout=10).text
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)]
    return sum(values)


def test_a_burst_past_capacity_is_shed_with_retry_after_and_the_admitted_answer(
    platform: tuple[str, str],
) -> None:
    gateway, moe = platform
    # The long stream takes the only row: 200 once its first token is out.
    long = _body(max_tokens=1500, ignore_eos=True, stream=True)
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=long, timeout=60) as held:
        assert held.status_code == 200
        lines = held.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        prompt_tokens = _metric(moe, "moe_prompt_tokens_total")

        # Two streams and five plain requests arrive together: two can wait, for 0.3 s.
        burst = [_body(max_tokens=8, stream=i < 2) for i in range(7)]
        with ThreadPoolExecutor(len(burst)) as pool:
            answers = list(pool.map(lambda b: _post(gateway, b), burst))
        assert next(line for line in lines if line.startswith("data: "))  # still streaming

    for response, elapsed in answers:
        assert response.status_code == 503, response.text
        # the shared error shape, not an SSE stream: streams are shed before their 200
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert (error["code"], error["service"]) == ("overloaded", "moe_svc")
        assert int(response.headers["Retry-After"]) >= 1
        assert elapsed < 10  # shed at the deadline or at once, not after the long stream
    # none of the shed requests was prefilled: no work was done for them
    assert _metric(moe, "moe_prompt_tokens_total") == prompt_tokens
    assert _metric(moe, "moe_requests_shed_total") == len(burst)

    # With the row free again, the next request is admitted (the gateway's circuit to
    # moe_svc did not open on the busy answers).
    deadline = time.monotonic() + 30
    while _metric(moe, "moe_batch_size") > 0:  # the closed stream's row frees at a step
        assert time.monotonic() < deadline
        time.sleep(0.1)
    response, _ = _post(gateway, _body(max_tokens=8))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1
