"""The SSRF policy: which addresses and hosts a guarded fetch may reach."""

from __future__ import annotations

import ipaddress

import pytest

from common.netguard import AddressPolicy, HostAllowlist, parse_host_list, parse_ip_literal


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.0.0.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("017700000001", "127.0.0.1"),  # octal, one number
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("123abc", None),
    ],
)
def test_ip_literals_in_every_form(host: str, address: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert (str(parsed) if parsed else None) == address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("fc00::1", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("240.0.0.1", "private"),  # 240/4: reserved, listed as private
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    refusal = AddressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_exempt_all_but_metadata() -> None:
    policy = AddressPolicy(["127.0.0.0/8", "169.254.0.0/16"])
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.1")) == "a private address"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


def test_allowlist_exact_and_wildcard() -> None:
    allowlist = HostAllowlist(["Example.com", "*.wiki.org", "2130706433"])
    assert allowlist.allows("example.com") and allowlist.allows("EXAMPLE.com.")
    assert not allowlist.allows("www.example.com")
    assert allowlist.allows("en.wiki.org") and not allowlist.allows("wiki.org")
    assert not allowlist.allows("evilwiki.org")
    assert allowlist.allows("127.0.0.1")  # entries are normalised like hosts


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("example.com, *.Wiki.org ,", ["example.com", "*.wiki.org"]),  # as the env gives it
        ('["example.com", "[::1]"]', ["example.com", "::1"]),
        (["Example.COM."], ["example.com"]),
        ("", []),
    ],
)
def test_host_lists_from_settings(value: object, hosts: list[str]) -> None:
    assert parse_host_list(value, "X_HOSTS") == hosts


@pytest.mark.parametrize(
    "entry", ["https://example.com", "example.com:8080", "example.com/images", "u@example.com"]
)
def test_host_lists_refuse_what_would_never_match_a_host(entry: str) -> None:
    with pytest.raises(ValueError, match=f"X_HOSTS takes bare host names, got '{entry}'"):
        parse_host_list([entry], "X_HOSTS")
