"""tools_svc's settings: lists from the environment, unsafe values refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tools_svc.settings import ToolsSettings


def test_lists_come_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLS_HTTP_ALLOWED_HOSTS", "Example.com, *.wiki.org ,[::1]")
    monkeypatch.setenv("TOOLS_HTTP_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    settings = ToolsSettings()
    assert settings.http_allowed_hosts == ["example.com", "*.wiki.org", "::1"]
    assert settings.http_allowed_networks == ["127.0.0.1/32"]


def test_nothing_is_fetchable_by_default() -> None:
    settings = ToolsSettings()
    assert settings.http_allowed_hosts == [] and settings.http_allowed_networks == []


@pytest.mark.parametrize("host", ["http://a.com", "a.com:8080", "user@a.com", "a.com/path"])
def test_hosts_must_be_bare_names(host: str) -> None:
    with pytest.raises(ValidationError, match="bare host names"):
        ToolsSettings(http_allowed_hosts=[host])


def test_networks_must_be_cidrs() -> None:
    with pytest.raises(ValidationError, match="takes CIDRs"):
        ToolsSettings(http_allowed_networks=["10.0.0.0/8", "intranet"])
