"""Which hosts and addresses a guarded fetch may reach (the SSRF guard's policy).

Used by every fetch of a URL that a caller chose: tools_svc's `http_get` and
moe_svc's image URLs. A URL passes when its host is on the allowlist and every
address it resolves to is public. An address is refused when it is loopback,
private, link-local, multicast, unspecified, reserved, shared (CGNAT) or
otherwise not global, or a cloud metadata endpoint; IPv4 addresses embedded in
IPv6 (mapped, 6to4, Teredo, NAT64) are judged as the IPv4 address they carry.
Hosts written as numbers in any form `inet_aton` accepts (`2130706433`,
`0177.0.0.1`, `0x7f.1`, `127.1`) are read as the address they denote, as the
system resolver would, before anything else is decided.

`allowed_networks` exempts networks from the refusal (a loopback test
server, an intranet); metadata endpoints are refused regardless.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Iterable

__all__ = [
    "METADATA_HOSTS",
    "AddressPolicy",
    "HostAllowlist",
    "IPAddress",
    "Resolver",
    "normalize_host",
    "parse_host_list",
    "parse_ip_literal",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the host's addresses as text; injected so tests never ask real DNS.
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Only digits, dots and hex markers: a candidate for inet_aton's number forms.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` denotes if it is an IP literal in any accepted form, else None."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address.teredo:
        embedded += list(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in embedded if a is not None]


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` may not be fetched from (None: it is a public address)."""
    for inner in _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else []:
        reason = refusal_reason(inner)
        if reason:
            return f"{reason} (inside {address})"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attribute, reason in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return reason
    if not address.is_global:
        return "not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressPolicy:
    """Which addresses may be connected to: public ones, and `allowed_networks`."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed_networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused under this policy, or None when it may be used."""
        reason = refusal_reason(address)
        if reason is None or reason.startswith("a cloud metadata"):
            return reason
        if any(address in network for network in self.allowed_networks):
            return None
        return reason


class HostAllowlist:
    """Host names (`example.com`) and wildcards (`*.example.com`, subdomains only)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for entry in entries:
            name = normalize_host(entry)
            if name.startswith("*."):
                self.suffixes.append(name[1:])
            elif name:
                self.exact.add(name)

    def allows(self, host: str) -> bool:
        name = normalize_host(host)
        return name in self.exact or any(name.endswith(s) for s in self.suffixes)

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)


def normalize_host(host: str) -> str:
    """`host` lower-cased, without brackets or a trailing dot; an IP literal in its usual form."""
    name = host.strip().lower().strip("[]").rstrip(".")
    address = parse_ip_literal(name)
    return str(address) if address is not None else name


def parse_host_list(value: object, setting: str) -> object:
    """Allowlist entries from a setting: a list, comma-separated text or a JSON array.

    Entries are bare host names (`example.com`, `*.example.com`, an IP address);
    one with a scheme, port, path or credentials would never match a host, so it
    is refused with a ValueError that names `setting`. Anything that is not a
    list or text is returned unchanged, for the field's own validation to judge.
    """
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else text.split(",")
    if not isinstance(value, list):
        return value
    names = []
    for entry in value:
        name = str(entry).strip().lower().strip("[]").rstrip(".")
        if not name:
            continue
        is_ipv6 = name.count(":") >= 2 and parse_ip_literal(name) is not None
        if any(c in name for c in "/@ \t") or (":" in name and not is_ipv6):
            raise ValueError(f"{setting} takes bare host names, got {entry!r}")
        names.append(name)
    return names
