"""Image parts in, decoded RGB images or a 400 out (common.image_input).

Every image is built in memory. Remote URLs go through a resolver that answers
from a table and a transport that records each request and answers only
loopback from a handler, so no test opens a socket or asks real DNS.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image, ImageFile

from common.contracts.openai import ChatMessageIn, ImagePart, ImageUrl, TextPart
from common.errors import BadRequest
from common.image_input import ImageFetcher, ImageLimits, check_images, decode_images
from common.netguard import AddressPolicy
from moe_svc.settings import MoeSettings

LIMITS = ImageLimits()
PARAM = "messages[1].content[1].image_url"  # where `chat` puts the first image
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
ANSWERS = {
    "images.test": ["127.0.0.1"],  # loopback: reachable only under LOOPBACK_POLICY
    "localhost": ["127.0.0.1", "::1"],
    "internal.test": ["10.0.0.7"],
    "rebind.test": ["93.184.216.34", "127.0.0.1"],
    "meta.test": ["169.254.169.254"],
}
LOOPBACK_POLICY = AddressPolicy(["127.0.0.0/8"])


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def chat(*urls: str) -> list[ChatMessageIn]:
    """A system turn, then a user turn of text followed by one image part per URL."""
    parts: list[TextPart | ImagePart] = [TextPart(type="text", text="What is in these?")]
    parts += [ImagePart(type="image_url", image_url=ImageUrl(url=url)) for url in urls]
    return [
        ChatMessageIn(role="system", content="Describe images."),
        ChatMessageIn(role="user", content=parts),
    ]


async def refused(
    url: str, limits: ImageLimits = LIMITS, fetcher: ImageFetcher | None = None
) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        await decode_images(chat(url), limits, fetcher=fetcher)
    error = caught.value
    assert (error.status_code, error.param) == (400, PARAM), error.message
    return error


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(width: int, height: int, rows: int) -> bytes:
    """A black 8-bit grey PNG of that size, with pixel data for its first `rows` rows only.

    The rows are compressed one at a time: a 50-megapixel image costs a few KB here.
    """
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte, then the pixels
    idat = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + (png_chunk(b"IEND", b""))
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) declares `width` x `height`."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


class Network:
    """A resolver and a transport that record everything and reach nothing.

    Requests to loopback are answered by `handler`; any other is refused with
    an error, so even a broken guard in the code under test could reach nothing.
    """

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.handler = handler or (lambda request: httpx.Response(500))
        self.queries: list[str] = []
        self.requests: list[httpx.Request] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.queries.append(host)
        if host not in ANSWERS:
            raise OSError(f"no test answer for {host}")
        return ANSWERS[host]

    def fetcher(self, policy: AddressPolicy | None = None) -> ImageFetcher:
        transport = httpx.MockTransport(self._handle)
        return ImageFetcher(
            policy=policy or AddressPolicy(), resolver=self.resolve, transport=transport
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not ipaddress.ip_address(request.url.host).is_loopback:
            raise httpx.ConnectError(f"blocked by the test: a connection to {request.url.host}")
        return self.handler(request)


# --- accepted images ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "media_type", "options"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {"quality": 95}),
        ("JPEG", "image/jpg", {"quality": 95}),
        ("WEBP", "image/webp", {"lossless": True}),
    ],
)
async def test_png_jpeg_and_webp_decode_to_rgb(
    fmt: str, media_type: str, options: dict[str, Any]
) -> None:
    source = Image.new("RGB", (40, 30), RED)
    url = data_url(encode(source, fmt, **options), media_type)
    [image] = await decode_images(chat(url), LIMITS)
    assert (image.mode, image.size) == ("RGB", (40, 30))
    red, green, blue = image.getpixel((20, 15))  # type: ignore[misc]
    assert red > 240 and green < 15 and blue < 15


async def test_every_image_of_the_conversation_comes_back_in_order() -> None:
    urls = [data_url(encode(Image.new("RGB", (8, 8), colour), "PNG")) for colour in (RED, BLUE)]
    images = await decode_images(chat(*urls), LIMITS)
    assert [image.getpixel((0, 0)) for image in images] == [RED, BLUE]


async def test_transparency_is_composited_onto_white() -> None:
    source = Image.new("RGBA", (2, 1), (*RED, 255))
    source.putpixel((1, 0), (*BLUE, 0))  # fully transparent
    [image] = await decode_images(chat(data_url(encode(source, "PNG"))), LIMITS)
    assert image.mode == "RGB" and [image.getpixel((0, 0)), image.getpixel((1, 0))] == [RED, WHITE]


async def test_an_animation_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    for fmt in ("PNG", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
        [image] = await decode_images(chat(data_url(data, f"image/{fmt.lower()}")), LIMITS)
        assert image.getpixel((0, 0)) == RED, fmt


async def test_a_16_bit_grey_png_keeps_its_tones() -> None:
    # A plain convert("RGB") clips 16-bit values to 255: the picture would come back white.
    data = encode(Image.new("I;16", (4, 4), 32_896), "PNG")  # mid grey
    [image] = await decode_images(chat(data_url(data)), LIMITS)
    assert image.getpixel((0, 0)) == (128, 128, 128)


async def test_a_photo_is_turned_upright_by_its_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    data = encode(Image.new("RGB", (40, 20), RED), "JPEG", exif=exif)
    [image] = await decode_images(chat(data_url(data, "image/jpeg")), LIMITS)
    assert image.size == (20, 40)


async def test_the_real_format_counts_not_the_claimed_one() -> None:
    jpeg = encode(Image.new("RGB", (8, 8), RED), "JPEG")
    [image] = await decode_images(chat(data_url(jpeg, "image/png")), LIMITS)
    assert image.size == (8, 8)

    gif = encode(Image.new("RGB", (8, 8), RED), "GIF")
    error = await refused(data_url(gif, "image/png"))
    assert error.code == "invalid_image" and "GIF" in error.message


# --- refused data --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        (data_url(encode(Image.new("RGB", (8, 8)), "GIF"), "image/gif"), "media type"),
        (data_url(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"), "media type"),
        (data_url(b'<svg xmlns="http://www.w3.org/2000/svg"/>'), "SVG"),
        (data_url(encode(Image.new("RGB", (8, 8)), "BMP")), "BMP"),
        (data_url(b"hello, I am text"), "not a PNG, JPEG or WebP"),
        (data_url(encode(Image.new("RGB", (64, 64), RED), "PNG")[:80]), "could not be decoded"),
        ("data:image/png;base64,iVBORw0KGgo@@@", "base64"),
        ("data:image/png;base64,iVBORw0K Ggo=", "base64"),
        ("data:image/png,%89PNG", "not base64"),
        ("data:image/png;base64", "no ','"),
        ("data:;base64,iVBORw0KGgo=", "media type"),
    ],
)
async def test_anything_but_a_png_jpeg_or_webp_is_refused(url: str, phrase: str) -> None:
    error = await refused(url)
    assert error.code == "invalid_image"
    assert phrase in error.message and "PNG, JPEG or WebP" in error.message


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (grey_png(10_000, 5_000, rows=5_000), LIMITS),  # 50 MP, 48 KB: a real bomb
        (grey_png(100_000, 100_000, rows=1), LIMITS),  # 10 GP declared in the header
        (grey_png(100_000, 100_000, rows=1), ImageLimits(max_pixels=10**12)),  # Pillow's guard
        (jpeg_claiming(20_000, 2_500), LIMITS),
        (jpeg_claiming(60_000, 60_000), ImageLimits(max_pixels=10**12)),
    ],
    ids=["png-50mp", "png-header", "png-past-pillow", "jpeg-50mp", "jpeg-past-pillow"],
)
async def test_too_many_pixels_are_refused_from_the_header_without_decoding(
    data: bytes, limits: ImageLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[object] = []
    load = ImageFile.ImageFile.load

    def recording_load(image: ImageFile.ImageFile) -> Any:
        loads.append(image)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    started = time.perf_counter()
    error = await refused(data_url(data), limits)
    assert error.code == "image_too_large" and "pixels" in error.message
    assert loads == [] and time.perf_counter() - started < 2


async def test_a_50_megapixel_png_names_its_size() -> None:
    error = await refused(data_url(grey_png(10_000, 5_000, rows=1)))
    assert "10000x5000" in error.message and "16,000,000 pixels" in error.message


@pytest.mark.parametrize("extra", [1, 100_000], ids=["just-over", "far-over"])
async def test_files_over_the_byte_limit_are_refused_before_their_format(extra: int) -> None:
    limits = ImageLimits(max_bytes=2048)
    error = await refused(data_url(bytes(2048 + extra)), limits)  # not even an image
    assert error.code == "image_too_large" and "2,048 bytes" in error.message


async def test_more_images_than_the_limit_are_refused_before_any_is_decoded() -> None:
    url = data_url(b"not an image, never decoded")
    with pytest.raises(BadRequest) as caught:
        await decode_images(chat(*[url] * 9), LIMITS)
    error = caught.value
    assert (error.status_code, error.code, error.param) == (400, "too_many_images", "messages")
    assert "9 images" in error.message and "at most 8" in error.message


async def test_the_param_names_the_message_and_the_part() -> None:
    good = data_url(encode(Image.new("RGB", (4, 4)), "PNG"))
    messages = [
        *chat(good),
        ChatMessageIn(role="assistant", content="A black square."),
        ChatMessageIn(role="user", content=chat(good, "data:image/png;base64,!!")[1].content),
    ]
    with pytest.raises(BadRequest) as caught:
        await decode_images(messages, LIMITS)
    assert caught.value.param == "messages[3].content[2].image_url"


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://images.test/cat.png",
        "javascript:alert(1)",
        "gopher://images.test/",
        "/images/cat.png",
        "cat.png",
    ],
)
async def test_other_schemes_are_refused(url: str) -> None:
    network = Network()
    limits = ImageLimits(url_allowlist=("images.test",))
    error = await refused(url, limits, network.fetcher())
    assert error.code == "image_url_not_allowed" and "data:image/png;base64" in error.message
    assert network.queries == [] and network.requests == []


async def test_remote_urls_are_refused_without_an_allowlist() -> None:
    network = Network()
    error = await refused("https://images.test/cat.png", LIMITS, network.fetcher())
    assert error.code == "image_url_not_allowed" and "fetches no image URLs" in error.message
    assert network.queries == [] and network.requests == []


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://127.0.0.1/cat.png", "127.0.0.1 is a loopback address"),
        ("http://2130706433/cat.png", "is 127.0.0.1, a loopback address"),
        ("http://[::1]/cat.png", "a loopback address"),
        ("http://localhost/cat.png", "localhost is a local or cloud metadata host"),
        ("http://10.1.2.3/cat.png", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://metadata.google.internal/", "cloud metadata host"),
        ("http://internal.test/cat.png", "resolves to 10.0.0.7"),
        ("http://rebind.test/cat.png", "resolves to 127.0.0.1"),
        ("http://meta.test/cat.png", "cloud metadata"),
        ("http://user:secret@images.test/cat.png", "credentials"),
        ("http://elsewhere.test/cat.png", "not on the image URL allowlist"),
    ],
)
async def test_private_addresses_are_refused_before_any_connection(url: str, phrase: str) -> None:
    network = Network()
    allowlist = (
        *("127.0.0.1", "::1", "localhost", "10.1.2.3", "169.254.169.254", "images.test"),
        *("metadata.google.internal", "internal.test", "rebind.test", "meta.test"),
    )
    limits = ImageLimits(url_allowlist=allowlist)
    error = await refused(url, limits, network.fetcher())
    assert error.code == "image_url_not_allowed" and phrase in error.message
    assert network.requests == []


def site(request: httpx.Request) -> httpx.Response:
    """The allowlisted image host, on loopback (reached only through the recording transport)."""
    path = request.url.path
    if path == "/cat.png":
        return httpx.Response(200, content=encode(Image.new("RGB", (8, 8), BLUE), "PNG"))
    if path == "/big.png":
        return httpx.Response(200, content=bytes(4096))
    if path.startswith("/to/"):
        return httpx.Response(302, headers={"location": "http://" + path.removeprefix("/to/")})
    return httpx.Response(404)


async def test_an_allowlisted_url_is_fetched_from_the_checked_address() -> None:
    network = Network(site)
    limits = ImageLimits(url_allowlist=("images.test",))
    fetcher = network.fetcher(LOOPBACK_POLICY)
    [image] = await decode_images(chat("http://images.test/cat.png"), limits, fetcher=fetcher)
    assert image.getpixel((0, 0)) == BLUE
    [request] = network.requests
    assert (request.url.host, request.headers["host"]) == ("127.0.0.1", "images.test")


@pytest.mark.parametrize(
    ("path", "code", "phrase"),
    [
        ("/to/169.254.169.254/latest/meta-data/", "image_url_not_allowed", "cloud metadata"),
        ("/to/elsewhere.test/cat.png", "image_url_not_allowed", "not on the image URL"),
        (
            "/to/images.test/to/images.test/to/images.test/to/images.test/x",
            "image_fetch_failed",
            "redirects",
        ),
        ("/big.png", "image_too_large", "2,048 bytes"),
        ("/missing.png", "image_fetch_failed", "HTTP 404"),
    ],
)
async def test_redirects_are_checked_and_bodies_capped(path: str, code: str, phrase: str) -> None:
    network = Network(site)
    limits = ImageLimits(max_bytes=2048, url_allowlist=("images.test",))
    fetcher = network.fetcher(LOOPBACK_POLICY)
    error = await refused(f"http://images.test{path}", limits, fetcher)
    assert error.code == code and phrase in error.message
    assert all(request.url.host == "127.0.0.1" for request in network.requests)


async def test_a_slow_host_runs_into_the_deadline() -> None:
    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)

    fetcher = ImageFetcher(
        policy=LOOPBACK_POLICY,
        resolver=Network().resolve,
        transport=httpx.MockTransport(never_answers),
    )
    limits = ImageLimits(url_allowlist=("images.test",), fetch_timeout_s=0.05)
    error = await refused("http://images.test/cat.png", limits, fetcher)
    assert error.code == "image_fetch_failed" and "within 0.05 s" in error.message


def test_limits_come_from_the_settings() -> None:
    settings = MoeSettings(
        image_url_allowlist="images.example.com, *.cdn.example.org",  # as the env gives it
        max_images_per_request=2,
        max_image_pixels=1000,
    )
    limits = ImageLimits.from_settings(settings)
    assert limits.url_allowlist == ("images.example.com", "*.cdn.example.org")
    assert (limits.max_images, limits.max_pixels, limits.max_bytes) == (2, 1000, 10 * 1024**2)
    with pytest.raises(ValueError, match="bare host names"):
        MoeSettings(image_url_allowlist="https://images.example.com/")


async def test_the_gateways_check_refuses_what_the_model_would_and_fetches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_dns(*_: object) -> list[str]:
        raise AssertionError("check_images resolved a name")

    monkeypatch.setattr("common.netguard.system_resolver", no_dns)
    good = data_url(encode(Image.new("RGB", (8, 8), BLUE), "PNG"))
    await check_images(chat(good, "https://images.example.com/cat.png"), LIMITS)
    for url, code in [
        (data_url(b"just text"), "invalid_image"),
        (data_url(grey_png(10_000, 5_000, 1)), "image_too_large"),
        ("http://127.0.0.1:1/cat.png", "image_url_not_allowed"),
        ("http://localhost/cat.png", "image_url_not_allowed"),
        ("file:///etc/passwd", "image_url_not_allowed"),
    ]:
        with pytest.raises(BadRequest) as caught:
            await check_images(chat(good, url), LIMITS)
        assert caught.value.code == code
        assert caught.value.param == "messages[1].content[2].image_url"
