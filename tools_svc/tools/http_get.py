"""`http_get`: fetch a text page from an allowlisted host, guarded against SSRF.

Every hop (the URL, then each redirect) is checked before any connection:
scheme http(s), no credentials, host on the allowlist, and every address the
host resolves to allowed by `AddressPolicy`. The request then goes to the
checked address itself (the `Host` header and TLS server name keep the
name), so a DNS answer that changes between the check and the connection
(rebinding) changes nothing. Redirects are followed by hand, a bounded
number of times; the body is read up to a byte cap and must be text.

The resolver and the transport are injected, so tests can record and block
every attempted connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from typing import Any

import httpx
from pydantic import Field

from common.caller import TOOL_SCOPES
from common.errors import BadRequest, Forbidden
from common.netguard import (
    METADATA_HOSTS,
    AddressPolicy,
    HostAllowlist,
    IPAddress,
    Resolver,
    normalize_host,
    parse_ip_literal,
    system_resolver,
)
from tools_svc.registry import Tool, ToolArguments, ToolResult

__all__ = ["HttpGetTool", "SafeFetcher"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")
TEXT_SUFFIXES = ("+json", "+xml")
TEXT_EXTRA = frozenset({"application/javascript", "application/x-www-form-urlencoded"})
USER_AGENT = "llm-platform-tools/0.1 (http_get)"


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(TEXT_TYPES) or media.endswith(TEXT_SUFFIXES) or media in TEXT_EXTRA


class FetchFailed(Exception):
    """The fetch could not complete (network, timeout, content); not a policy refusal."""


class SafeFetcher:
    def __init__(
        self,
        *,
        allowed_hosts: list[str],
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
        max_bytes: int = 1_000_000,
        max_redirects: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        self.allowlist = HostAllowlist(allowed_hosts)
        self.policy = policy
        self.resolver = resolver
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.timeout_s = timeout_s
        # No keep-alive: a pooled TLS connection made for one name must not serve another.
        self.transport = transport or httpx.AsyncHTTPTransport(
            retries=0, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self._client = httpx.AsyncClient(
            transport=self.transport, trust_env=False, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _refuse(self, message: str, code: str, hop: int) -> Forbidden:
        if hop:
            message = f"Redirect refused: {message}"
            code = "redirect_refused"
        return Forbidden(message, param="arguments.url", code=code)

    async def check(self, url: httpx.URL, hop: int = 0) -> IPAddress:
        """The address to connect to for `url`, or a refusal (403/400) saying why."""
        if url.scheme not in ("http", "https"):
            message = f"only http and https URLs may be fetched, not {url}"
            raise self._refuse(message, "bad_scheme", hop)
        if url.userinfo:
            raise self._refuse("URLs with credentials are not fetched", "credentials_in_url", hop)
        host = normalize_host(url.host)
        if not host:
            raise self._refuse(f"{url} has no host", "invalid_url", hop)
        literal = parse_ip_literal(host)
        if literal is not None:
            reason = self.policy.refusal(literal)
            if reason:
                shown = (
                    f"{url.host} is {literal}, {reason}"
                    if url.host != str(literal)
                    else (f"{literal} is {reason}")
                )
                raise self._refuse(f"{shown}; it is never fetched", "address_not_allowed", hop)
        if host in METADATA_HOSTS:
            raise self._refuse(f"{host} is a cloud metadata host", "address_not_allowed", hop)
        if not self.allowlist.allows(host):
            hint = "" if self.allowlist else " (none are allowed: set TOOLS_HTTP_ALLOWED_HOSTS)"
            raise self._refuse(
                f"{host} is not on the allowlist of hosts{hint}", "host_not_allowed", hop
            )
        if literal is not None:
            return literal
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            answers = await self.resolver(host, port)
        except OSError as exc:
            raise FetchFailed(f"cannot resolve {host}: {exc}") from None
        addresses = [a for a in (parse_ip_literal(answer) for answer in answers) if a is not None]
        if not addresses:
            raise FetchFailed(f"{host} has no address")
        # One bad answer refuses the host: the connection could otherwise land on it.
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason:
                raise self._refuse(
                    f"{host} resolves to {address}, {reason}", "address_not_allowed", hop
                )
        return addresses[0]

    def _refuse_numeric_host(self, url: str) -> None:
        # httpx rejects some numeric hosts (0177.0.0.1) that resolvers accept; a
        # refusal that names the address says more than "invalid URL".
        with contextlib.suppress(ValueError):
            host = urllib.parse.urlsplit(url).hostname or ""
            address = parse_ip_literal(host)
            reason = self.policy.refusal(address) if address else None
            if address is not None and reason:
                raise self._refuse(
                    f"{host} is {address}, {reason}; it is never fetched", "address_not_allowed", 0
                )

    async def fetch(self, url: str) -> dict[str, Any]:
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            self._refuse_numeric_host(url)
            raise BadRequest(
                f"Invalid URL: {exc}.", param="arguments.url", code="invalid_url"
            ) from None
        redirects: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                for hop in range(self.max_redirects + 1):
                    address = await self.check(current, hop)
                    response = await self._send(current, address)
                    location = response.headers.get("location")
                    if response.status_code in REDIRECTS and location:
                        await response.aclose()
                        try:
                            current = current.join(location)
                        except (httpx.InvalidURL, ValueError) as exc:
                            raise FetchFailed(f"invalid redirect to {location!r}: {exc}") from None
                        redirects.append(str(current))
                        continue
                    return await self._read(current, response, redirects)
        except TimeoutError:
            raise FetchFailed(f"no complete answer within {self.timeout_s:g} s") from None
        raise FetchFailed(f"more than {self.max_redirects} redirects")

    async def _send(self, url: httpx.URL, address: IPAddress) -> httpx.Response:
        host_header = url.host if url.port is None else f"{url.host}:{url.port}"
        extensions: dict[str, Any] = {}
        if url.scheme == "https" and parse_ip_literal(url.host) is None:
            extensions["sni_hostname"] = url.host
        request = httpx.Request(
            "GET",
            url.copy_with(host=str(address)),
            headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "text/*, */*;q=0.1"},
            extensions=extensions,
        )
        try:
            return await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def _read(
        self, url: httpx.URL, response: httpx.Response, redirects: list[str]
    ) -> dict[str, Any]:
        try:
            content_type = response.headers.get("content-type", "")
            if not _is_text(content_type):
                raise FetchFailed(f"not text content ({content_type or 'no content type'})")
            body = bytearray()
            truncated = False
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    del body[self.max_bytes :]
                    truncated = True
                    break
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        finally:
            await response.aclose()
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        if truncated:
            text += f"\n[... truncated after {self.max_bytes} bytes]"
        return {
            "url": str(url),
            "status": response.status_code,
            "content_type": content_type,
            "text": text,
            "truncated": truncated,
            "redirects": redirects,
        }


class HttpGetArguments(ToolArguments):
    url: str = Field(min_length=1, max_length=2048, description="An http(s) URL, allowed host.")


class HttpGetTool(Tool):
    name = "http_get"
    description = (
        "Fetch a web page (text content only) from a host on the service's allowlist; "
        "private, loopback and metadata addresses are refused."
    )
    arguments = HttpGetArguments
    scope = TOOL_SCOPES["http_get"]

    def __init__(self, fetcher: SafeFetcher) -> None:
        self.fetcher = fetcher
        # The fetcher keeps its own deadline; this one only backs it up.
        self.timeout_s = fetcher.timeout_s + 2

    async def run(self, arguments: Any) -> ToolResult:
        args: HttpGetArguments = arguments
        try:
            page = await self.fetcher.fetch(args.url)
        except FetchFailed as exc:
            return ToolResult(None, f"fetch failed: {exc}")
        error = f"HTTP {page['status']}" if page["status"] >= 400 else None
        return ToolResult(page, error)
