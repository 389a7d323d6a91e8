"""Image parts of a chat request, untrusted, turned into decoded RGB images or a clear 400.

An image arrives as a `data:image/png|jpeg|webp;base64,...` URL, or as an
http(s) URL whose host is on the serving side's allowlist (moe_svc's
`MOE_IMAGE_URL_ALLOWLIST`), fetched through the
SSRF guard (`common.netguard`): every address the host resolves to must be
public, the connection goes to the checked address, each redirect is checked
the same way, the body is read up to a byte cap within a deadline.

The bytes must be a PNG, JPEG or WebP whatever the URL claims: only those
three of Pillow's parsers ever see them. Limits are checked before the pixels
are decoded: the file's size, then width x height from its header, so a
decompression bomb is refused without its pixels being allocated. The image
returned is the first frame, turned upright by its EXIF orientation, in RGB
with any transparency composited onto white, and owns its pixels.

Every refusal is a `BadRequest` (400) whose `param` names the content part
(`messages[2].content[1].image_url`) and whose `code` is one of
`invalid_image`, `image_too_large`, `too_many_images` (param `messages`),
`image_url_not_allowed` or `image_fetch_failed`.

The gateway runs `check_images` before a request goes anywhere, so a bad image is
refused before anything is stored: every data URL decoded, and no http(s) URL that
names a refused address or a metadata host (the service that fetches applies its
allowlist and resolves the name).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from PIL import ExifTags, Image, ImageOps

from common.contracts.openai import ChatMessageIn, ImagePart, ImageUrl
from common.errors import BadRequest
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

__all__ = [
    "ImageFetcher",
    "ImageLimits",
    "check_images",
    "decode_image",
    "decode_images",
    "open_image",
]

FORMATS = ("PNG", "JPEG", "WEBP")  # Pillow's names; no other parser reads the bytes
MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp"})
ACCEPTED = "a PNG, JPEG or WebP image as a base64 data URL (data:image/png;base64,...)"
INLINE = "send the image inline as a base64 data URL (data:image/png;base64,...)"
# Leading bytes of formats people send by mistake, so the refusal can name what came.
KNOWN_OTHERS = {
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"%PDF": "a PDF document",
    b"<svg": "an SVG image",
    b"<?xml": "an XML document (SVG?)",
}
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
USER_AGENT = "llm-platform-moe/0.1 (image fetch)"


@dataclass(frozen=True)
class ImageLimits:
    max_images: int = 8  # image parts per request
    max_bytes: int = 10 * 1024 * 1024  # file size, after base64 decoding or download
    max_pixels: int = 16_000_000  # width x height, read from the header
    url_allowlist: tuple[str, ...] = ()  # hosts http(s) image URLs may name
    fetch_timeout_s: float = 10.0  # one remote image, redirects included

    @classmethod
    def from_settings(cls, settings: _ImageSettings) -> ImageLimits:
        return cls(
            max_images=settings.max_images_per_request,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            url_allowlist=tuple(getattr(settings, "image_url_allowlist", ())),
            fetch_timeout_s=getattr(settings, "image_fetch_timeout_s", cls.fetch_timeout_s),
        )


class _ImageSettings(Protocol):
    max_images_per_request: int
    max_image_bytes: int
    max_image_pixels: int


def _invalid(why: str, param: str) -> BadRequest:
    return BadRequest(f"{why}; send {ACCEPTED}.", param=param, code="invalid_image")


def _too_large(what: str, limit: str, param: str) -> BadRequest:
    message = f"The image is {what}; the limit is {limit}. Send a smaller image."
    return BadRequest(message, param=param, code="image_too_large")


def _not_allowed(why: str, param: str) -> BadRequest:
    return BadRequest(f"{why}; {INLINE}.", param=param, code="image_url_not_allowed")


def _fetch_failed(url: httpx.URL, why: str, param: str) -> BadRequest:
    shown = str(url) if len(str(url)) <= 200 else f"{str(url)[:200]}..."
    message = f"The image at {shown} could not be fetched: {why}. Check the URL, or {INLINE}."
    return BadRequest(message, param=param, code="image_fetch_failed")


def _image_parts(messages: list[ChatMessageIn], limits: ImageLimits) -> list[tuple[str, ImageUrl]]:
    """(param, url) of every image part, in order; 400 when there are too many."""
    parts = [
        (f"messages[{i}].content[{j}].image_url", part.image_url)
        for i, message in enumerate(messages)
        if isinstance(message.content, list)
        for j, part in enumerate(message.content)
        if isinstance(part, ImagePart)
    ]
    if len(parts) > limits.max_images:
        raise BadRequest(
            f"The request has {len(parts)} images; at most {limits.max_images} are accepted "
            "per request.",
            param="messages",
            code="too_many_images",
        )
    return parts


async def decode_images(
    messages: list[ChatMessageIn], limits: ImageLimits, *, fetcher: ImageFetcher | None = None
) -> list[Image.Image]:
    """Every image part of the conversation, in order, decoded; the count is checked first."""
    parts = _image_parts(messages, limits)
    return [await decode_image(url, limits, param, fetcher=fetcher) for param, url in parts]


async def check_images(messages: list[ChatMessageIn], limits: ImageLimits) -> None:
    """400 for any image part the serving side would refuse, without fetching anything:
    data URLs are decoded, http(s) URLs checked as far as they can be without DNS."""
    for param, url in _image_parts(messages, limits):
        scheme = url.url.partition(":")[0].strip().lower()
        if scheme in ("http", "https"):
            try:
                parsed = httpx.URL(url.url)
            except (httpx.InvalidURL, ValueError) as exc:
                raise _not_allowed(f"The image URL is not a valid URL ({exc})", param) from None
            _refuse_at_sight(parsed, AddressPolicy(), param)
        else:
            await decode_image(url, limits, param)


async def decode_image(
    url: ImageUrl, limits: ImageLimits, param: str, *, fetcher: ImageFetcher | None = None
) -> Image.Image:
    """One image part decoded; `param` names it in any refusal.

    Decoding runs in a worker thread: a large image takes tens of milliseconds
    that the event loop should not wait through.
    """
    scheme, colon, _ = url.url.partition(":")
    scheme = scheme.strip().lower() if colon else ""
    if scheme == "data":
        return await asyncio.to_thread(_decode_data_url, url.url, limits, param)
    if scheme in ("http", "https"):
        data = await (fetcher or ImageFetcher()).fetch(url.url, limits, param)
        return await asyncio.to_thread(open_image, data, limits, param)
    kind = f"{scheme}: URLs are" if scheme else "this is"
    raise BadRequest(
        f"Image URLs must be base64 data URLs (data:image/png;base64,...) or allowlisted "
        f"http(s) URLs; {kind} not accepted.",
        param=param,
        code="image_url_not_allowed",
    )


def _decode_data_url(url: str, limits: ImageLimits, param: str) -> Image.Image:
    header, comma, payload = url.partition(",")
    media_type, *options = [p.strip().lower() for p in header.split(":", 1)[1].split(";")]
    if not comma:
        raise _invalid("The data URL has no ',' before its data", param)
    if media_type not in MEDIA_TYPES:
        raise _invalid(f"The data URL's media type is {media_type[:40] or 'missing'!r}", param)
    if not options or options[-1] != "base64":
        raise _invalid("The data URL is not base64-encoded (no ';base64')", param)
    # Refuse by the text's length before decoding: the bytes are never allocated.
    if len(payload) > 4 * -(-limits.max_bytes // 3):
        size = f"about {len(payload) * 3 // 4:,} bytes"
        raise _too_large(size, f"{limits.max_bytes:,} bytes", param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        why = "The data URL's base64 is invalid (standard alphabet, no spaces)"
        raise _invalid(why, param) from None
    return open_image(data, limits, param)


def open_image(data: bytes, limits: ImageLimits, param: str) -> Image.Image:
    """`data` as a PNG, JPEG or WebP image within `limits`: RGB, first frame, upright."""
    if len(data) > limits.max_bytes:
        raise _too_large(f"{len(data):,} bytes", f"{limits.max_bytes:,} bytes", param)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, for sizes far past any sane limit (ours is checked below).
        raise _too_large("far too many pixels", f"{limits.max_pixels:,} pixels", param) from None
    except Exception:  # any failure of a parser on untrusted bytes is the input's fault
        raise _invalid(_what_it_is(data), param) from None
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            size = f"{width}x{height} ({width * height:,} pixels)"
            raise _too_large(size, f"{limits.max_pixels:,} pixels", param)
        try:
            image.load()  # the first frame of an animation
            return _rgb(_upright(image))
        except Exception as exc:  # truncated or corrupt: Pillow raises many kinds of error
            why = f"The {image.format} image could not be decoded ({exc})"
            raise _invalid(why, param) from None


def _what_it_is(data: bytes) -> str:
    head = data[:64].lstrip()
    for magic, name in KNOWN_OTHERS.items():
        if head.startswith(magic):
            return f"The data is {name}, which is not accepted"
    return "The data is not a PNG, JPEG or WebP image"


def _upright(image: Image.Image) -> Image.Image:
    # Phones store photos sideways with an EXIF note; the model should see what people see.
    if image.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)


def _rgb(image: Image.Image) -> Image.Image:
    """A new RGB image: 16-bit grey scaled to 8 bits, transparency composited onto white."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        # convert() would clip 16-bit values to 255: a white image.
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageFetcher:
    """Fetches an allowlisted http(s) image URL through the SSRF guard.

    `policy`, `resolver` and `transport` are injected by tests, which must see
    and block every DNS query and connection.
    """

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    resolver: Resolver = system_resolver
    transport: httpx.AsyncBaseTransport | None = None

    async def fetch(self, url: str, limits: ImageLimits, param: str) -> bytes:
        """The body at `url` (redirects followed, each checked), at most `limits.max_bytes`."""
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            # Some numeric hosts (0177.0.0.1) are invalid to httpx: never fetched either way.
            raise _not_allowed(f"The image URL is not a valid URL ({exc})", param) from None
        allowlist = HostAllowlist(limits.url_allowlist)
        # No keep-alive: a pooled TLS connection made for one name must not serve another.
        transport = self.transport or httpx.AsyncHTTPTransport(
            retries=0, limits=httpx.Limits(max_keepalive_connections=0)
        )
        client = httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)
        try:
            async with client, asyncio.timeout(limits.fetch_timeout_s):
                for _ in range(MAX_REDIRECTS + 1):
                    address = await self._checked_address(current, allowlist, param)
                    response = await client.send(_request(current, address), stream=True)
                    try:
                        location = response.headers.get("location")
                        if response.status_code in REDIRECTS and location:
                            current = current.join(location)
                            continue
                        if response.status_code != 200:
                            why = f"it answered HTTP {response.status_code}"
                            raise _fetch_failed(current, why, param)
                        return await _read_capped(response, limits, param)
                    finally:
                        await response.aclose()
        except TimeoutError:
            why = f"no complete answer within {limits.fetch_timeout_s:g} s"
            raise _fetch_failed(current, why, param) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _fetch_failed(current, f"{type(exc).__name__}: {exc}", param) from None
        raise _fetch_failed(current, f"more than {MAX_REDIRECTS} redirects", param)

    async def _checked_address(
        self, url: httpx.URL, allowlist: HostAllowlist, param: str
    ) -> IPAddress:
        """The address to connect to for `url`, or a refusal that says why; no connection."""
        literal = _refuse_at_sight(url, self.policy, param)
        host = normalize_host(url.host)
        if not allowlist.allows(host):
            if not allowlist:
                raise _not_allowed("This server fetches no image URLs", param)
            raise _not_allowed(f"{host or url} is not on the image URL allowlist", param)
        if literal is not None:
            return literal
        try:
            answers = await self.resolver(host, url.port or (443 if url.scheme == "https" else 80))
        except OSError as exc:
            raise _fetch_failed(url, f"cannot resolve {host} ({exc})", param) from None
        addresses = [a for a in map(parse_ip_literal, answers) if a is not None]
        if not addresses:
            raise _fetch_failed(url, f"{host} has no address", param)
        # One bad answer refuses the host: the connection could otherwise land on it.
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason:
                raise _not_allowed(f"{host} resolves to {address}, {reason}", param)
        return addresses[0]


def _refuse_at_sight(url: httpx.URL, policy: AddressPolicy, param: str) -> IPAddress | None:
    """400 for what the URL itself shows is never fetched; its address if it is a literal."""
    if url.scheme not in ("http", "https"):
        raise _not_allowed(f"{url} is not an http(s) URL", param)
    if url.userinfo:
        raise _not_allowed("Image URLs with credentials are not fetched", param)
    host = normalize_host(url.host)
    literal = parse_ip_literal(host)
    reason = policy.refusal(literal) if literal is not None else None
    if literal is not None and reason:
        shown = f"{url.host} is {literal}," if url.host != str(literal) else f"{literal} is"
        raise _not_allowed(f"{shown} {reason}, never fetched", param)
    if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
        raise _not_allowed(f"{host} is a local or cloud metadata host, never fetched", param)
    return literal


def _request(url: httpx.URL, address: IPAddress) -> httpx.Request:
    """A GET of `url` sent to the checked `address`: no second DNS lookup can move it."""
    extensions: dict[str, str] = {}
    if url.scheme == "https" and parse_ip_literal(url.host) is None:
        extensions["sni_hostname"] = url.host  # the certificate is checked against the name
    return httpx.Request(
        "GET",
        url.copy_with(host=str(address)),
        headers={
            "Host": url.host if url.port is None else f"{url.host}:{url.port}",
            "User-Agent": USER_AGENT,
            "Accept": "image/png, image/jpeg, image/webp",
            "Accept-Encoding": "identity",  # the byte cap then counts what was sent
        },
        extensions=extensions,
    )


async def _read_capped(response: httpx.Response, limits: ImageLimits, param: str) -> bytes:
    limit = f"{limits.max_bytes:,} bytes"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(f"{int(declared):,} bytes", limit, param)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limits.max_bytes:
            raise _too_large(f"more than {limits.max_bytes:,} bytes", limit, param)
    return bytes(body)
