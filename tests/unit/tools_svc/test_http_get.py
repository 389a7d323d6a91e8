"""http_get's SSRF guard, through the app.

Every test injects a resolver and a transport that record and block each
attempted connection to anything but loopback (answered by fake pages), so
no test can reach a private or public address even if the guard broke.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.helpers.tools_fakes import (
    AppClient,
    AppFactory,
    GuardTransport,
    RecordingResolver,
    pages,
)
from tools_svc.settings import ToolsSettings

ANSWERS = {
    "example.com": ["93.184.216.34"],
    "localhost": ["127.0.0.1", "::1"],
    "internal.example.org": ["10.0.0.7"],
    "rebind.example.org": ["93.184.216.34", "127.0.0.1"],
    "meta.example.org": ["169.254.169.254"],
}


async def invoke(client: AppClient, url: str) -> httpx.Response:
    return await client.post("/v1/tools/http_get/invoke", json={"arguments": {"url": url}})


@pytest.mark.parametrize(
    ("url", "code", "phrase"),
    [
        ("http://127.0.0.1/", "address_not_allowed", "127.0.0.1 is a loopback address"),
        ("http://localhost:8004/", "address_not_allowed", "localhost resolves to 127.0.0.1"),
        ("http://[::1]/", "address_not_allowed", "::1 is a loopback address"),
        ("http://10.0.0.1/", "address_not_allowed", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "address_not_allowed", "cloud metadata"),
        ("http://2130706433/", "address_not_allowed", "2130706433 is 127.0.0.1, a loopback"),
        ("http://0177.0.0.1/", "address_not_allowed", "0177.0.0.1 is 127.0.0.1, a loopback"),
        ("http://0x7f.1/", "address_not_allowed", "a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "address_not_allowed", "a private address"),
        ("http://internal.example.org/", "address_not_allowed", "resolves to 10.0.0.7"),
        ("http://rebind.example.org/", "address_not_allowed", "resolves to 127.0.0.1"),
        ("http://meta.example.org/", "address_not_allowed", "cloud metadata"),
        ("http://metadata.google.internal/", "address_not_allowed", "metadata host"),
        ("http://evil.test/", "host_not_allowed", "evil.test is not on the allowlist"),
        ("http://www.example.com/", "host_not_allowed", "not on the allowlist"),
        ("ftp://example.com/", "bad_scheme", "only http and https"),
        ("file:///etc/passwd", "bad_scheme", "only http and https"),
        ("http://user:pw@example.com/", "credentials_in_url", "credentials"),
    ],
)
async def test_refused_without_any_connection(
    settings: ToolsSettings, app_client: AppFactory, url: str, code: str, phrase: str
) -> None:
    resolver, transport = RecordingResolver(ANSWERS), GuardTransport(pages)
    async with app_client(settings, resolver=resolver, http_transport=transport) as client:
        response = await invoke(client, url)

    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        code,
        "arguments.url",
        "permission_error",
    )
    assert phrase in error["message"]
    assert transport.attempts == []


async def test_allowed_host_connects_to_the_checked_address(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    # example.com resolves to a public address: the request goes to that address,
    # with the name in the Host header (and the test transport blocks it).
    resolver, transport = RecordingResolver(ANSWERS), GuardTransport(pages)
    async with app_client(settings, resolver=resolver, http_transport=transport) as client:
        response = await invoke(client, "http://example.com/page")

    assert response.status_code == 200
    assert response.json()["error"].startswith("fetch failed: ConnectError: blocked by the test")
    assert transport.attempts == [("93.184.216.34", "example.com")]
    assert resolver.queries == ["example.com"]


def loopback_settings(settings: ToolsSettings) -> ToolsSettings:
    return settings.model_copy(update={"http_allowed_networks": ["127.0.0.1/32"]})


async def test_allowed_loopback_page_when_the_network_is_exempted(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    transport = GuardTransport(pages)
    async with app_client(loopback_settings(settings), http_transport=transport) as client:
        response = await invoke(client, "http://127.0.0.1:9/page")

    assert response.status_code == 200
    body = response.json()
    assert body["error"] is None
    assert body["output"]["text"] == "hello from loopback"
    assert body["output"]["status"] == 200


@pytest.mark.parametrize(
    ("target", "phrase"),
    [
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://169.254.169.254/latest/meta-data/iam", "cloud metadata"),
        ("http://internal.example.org/", "resolves to 10.0.0.7"),
        ("http://0x7f.0.0.2:8080/", "a loopback address"),  # only 127.0.0.1 is exempt
        ("http://evil.test/", "not on the allowlist"),
    ],
)
async def test_redirect_to_a_refused_address_is_refused(
    settings: ToolsSettings, app_client: AppFactory, target: str, phrase: str
) -> None:
    # The targets' hosts are allowlisted, so only the address checks can refuse them.
    hosts = ["127.0.0.1", "127.0.0.2", "internal.example.org", "10.1.2.3", "169.254.169.254"]
    allowed = loopback_settings(settings).model_copy(update={"http_allowed_hosts": hosts})
    resolver, transport = RecordingResolver(ANSWERS), GuardTransport(pages)
    async with app_client(allowed, resolver=resolver, http_transport=transport) as client:
        response = await invoke(client, f"http://127.0.0.1:9/redirect?to={target}")

    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "redirect_refused"
    assert phrase in error["message"]
    assert transport.non_loopback_attempts == []
    assert len(transport.attempts) == 1  # only the first, allowed hop


async def test_redirect_loops_stop(settings: ToolsSettings, app_client: AppFactory) -> None:
    transport = GuardTransport(pages)
    async with app_client(loopback_settings(settings), http_transport=transport) as client:
        response = await invoke(client, "http://127.0.0.1:9/loop")

    assert response.json()["error"] == "fetch failed: more than 5 redirects"
    assert len(transport.attempts) == 6


async def test_text_only_size_cap_and_http_errors(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    capped = loopback_settings(settings).model_copy(
        update={"http_max_bytes": 2048, "max_output_chars": 5000}
    )
    async with app_client(capped, http_transport=GuardTransport(pages)) as client:
        image = (await invoke(client, "http://127.0.0.1:9/image")).json()
        big = (await invoke(client, "http://127.0.0.1:9/big")).json()
        missing = (await invoke(client, "http://127.0.0.1:9/missing")).json()

    assert image["output"] is None
    assert image["error"] == "fetch failed: not text content (image/png)"
    assert big["output"]["truncated"] is True
    assert big["output"]["text"].startswith("x" * 1000)
    assert big["output"]["text"].endswith("[... truncated after 2048 bytes]")
    assert missing["error"] == "HTTP 404"
    assert missing["output"]["text"] == "no such page"


async def test_nothing_is_allowed_by_default(tmp_path: Path, app_client: AppFactory) -> None:
    transport = GuardTransport(pages)
    resolver = RecordingResolver(ANSWERS)
    async with app_client(
        ToolsSettings(data_dir=tmp_path), resolver=resolver, http_transport=transport
    ) as client:
        response = await invoke(client, "http://example.com/")

    assert response.status_code == 403
    assert "none are allowed: set TOOLS_HTTP_ALLOWED_HOSTS" in response.json()["error"]["message"]
    assert transport.attempts == [] and resolver.queries == []
