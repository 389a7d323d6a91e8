"""tools_svc as a real process: its tools over HTTP, with fake upstreams on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.servers import RunningServer, start_fake, start_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_fake(
        "tests.helpers.tools_fake_upstreams", tmp_path_factory.mktemp("fake"), name="fake_upstreams"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tools(fake: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_service(
        "tools_svc",
        tmp_path_factory.mktemp("tools"),
        upstreams={"rag_svc": fake.url},
        env={
            "TOOLS_KNOWLEDGE_COLLECTION": "docs",
            # The test's loopback server may be fetched: its host and network are allowed.
            "TOOLS_HTTP_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TOOLS_HTTP_ALLOWED_NETWORKS": "127.0.0.1/32",
        },
    )
    yield server
    server.stop()


def invoke(
    server: RunningServer, tool: str, arguments: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/tools/{tool}/invoke",
        json={"arguments": arguments},
        timeout=30,
        headers=headers,
    )


def test_lists_the_tools(tools: RunningServer) -> None:
    names = [t["function"]["name"] for t in httpx.get(f"{tools.url}/v1/tools").json()["data"]]
    assert sorted(names) == sorted(
        [
            "python",
            "calculator",
            "knowledge_search",
            "http_get",
            "datetime_now",
            "unit_convert",
            "training_planner",
        ]
    )


def test_knowledge_search_through_rag(tools: RunningServer) -> None:
    response = invoke(
        tools,
        "knowledge_search",
        {"query": "who patented the telephone", "k": 2},
        headers={"X-Request-ID": "ks-int-1"},
    )

    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["collection"] == "docs"
    assert output["results"][0]["doc_id"] == "bell"
    assert {r["collection"] for r in output["results"]} == {"docs"}
    assert len(output["results"]) == 2
    assert output["results"][0]["metadata"]["request_id"] == "ks-int-1"

    missing = invoke(tools, "knowledge_search", {"query": "x", "collection": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["service"] == "rag_svc"


def test_http_get_fetches_an_allowed_loopback_page(
    tools: RunningServer, fake: RunningServer
) -> None:
    response = invoke(tools, "http_get", {"url": f"{fake.url}/pages/hello"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None
    assert body["output"]["text"] == "Hello from a loopback page."
    assert body["output"]["content_type"].startswith("text/plain")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2/",  # loopback, outside the allowed 127.0.0.1/32
        "http://[::1]/",
        "http://2130706434/",  # 127.0.0.2 in decimal
        "http://0177.0.0.2/",  # 127.0.0.2 in octal
    ],
)
def test_http_get_refuses_other_loopback_addresses(tools: RunningServer, url: str) -> None:
    # Only loopback targets here: a real process resolves and connects for real.
    response = invoke(tools, "http_get", {"url": url})

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "address_not_allowed"


def test_http_get_refuses_a_redirect_to_a_refused_address(
    tools: RunningServer, fake: RunningServer
) -> None:
    target = "http://127.0.0.2:9/secret"
    response = invoke(tools, "http_get", {"url": f"{fake.url}/pages/redirect?to={target}"})

    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "redirect_refused"
    assert "127.0.0.2 is a loopback address" in error["message"]


def test_calculator_units_and_planner(tools: RunningServer) -> None:
    calc = invoke(tools, "calculator", {"expression": "(0.1 + 0.2) * 10^3"}).json()
    assert calc["output"]["result"] == "300"
    units = invoke(tools, "unit_convert", {"value": 72, "from_unit": "F", "to_unit": "C"}).json()
    assert units["output"]["result"] == pytest.approx(22.2222222)
    seed = {
        "total_params": 4e11,
        "active_params": 5e10,
        "steps": 500_000,
        "batch_tokens": 4e6,
        "gpu_type": "H100",
        "gpu_count": 512,
        "claimed_tokens_per_s": 4000,
        "claimed_days": 60,
        "claimed_cost_usd": 8e6,
    }
    planner = invoke(tools, "training_planner", seed).json()["output"]
    assert planner["consistent"] is False
    assert "about 16 years" in planner["issues"][0]

    bad = invoke(tools, "calculator", {"expression": "2 **"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "arguments.expression"


def test_calls_are_in_the_audit_log(tools: RunningServer) -> None:
    invoke(tools, "calculator", {"expression": "1+1"}, headers={"X-Request-ID": "audit-int-7"})

    # start_service gives the service the data directory <log dir>/tools_svc.
    audit = tools.log_path.parent / "tools_svc" / "tools_audit.jsonl"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    mine = [r for r in records if r["request_id"] == "audit-int-7"]
    assert [(r["tool"], r["outcome"], r["status"]) for r in mine] == [("calculator", "ok", 200)]
    assert "1+1" not in audit.read_text()
