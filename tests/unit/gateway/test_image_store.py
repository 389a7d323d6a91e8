"""Signed image URLs: valid until they expire, bound to one tenant's image; old images removed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from common.errors import Forbidden, NotFound
from gateway.image_store import ImageStore, load_url_secret
from gateway.settings import GatewaySettings

PNG = b"\x89PNG\r\n\x1a\n not really"


def _parts(signed: str) -> tuple[str, str, int, str]:
    url = urlsplit(signed)
    _, _, tenant, name = url.path.split("/")
    query = parse_qs(url.query)
    return tenant, name, int(query["expires"][0]), query["signature"][0]


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images", b"k" * 32, ttl_s=60)


async def test_a_signed_url_opens_its_image(store: ImageStore) -> None:
    image_id = await store.save("acme", PNG)
    tenant, name, expires, signature = _parts(store.signed_path("acme", image_id))
    assert (tenant, name) == ("acme", f"{image_id}.png")
    assert store.open(tenant, name, expires, signature).read_bytes() == PNG


async def test_tampered_urls_are_refused(store: ImageStore) -> None:
    image_id = await store.save("acme", PNG)
    other_id = await store.save("acme", PNG)
    tenant, name, expires, signature = _parts(store.signed_path("acme", image_id))
    for args in (
        ("other", name, expires, signature),  # another tenant
        (tenant, f"{other_id}.png", expires, signature),  # another image
        (tenant, name, expires + 3600, signature),  # a later expiry
        (tenant, name, expires, "0" * 64),
    ):
        with pytest.raises(Forbidden) as caught:
            store.open(*args)
        assert caught.value.code == "invalid_signature"
    with pytest.raises(NotFound):
        store.open("../etc", name, expires, signature)


async def test_expired_urls_are_refused_and_old_images_removed(store: ImageStore) -> None:
    image_id = await store.save("acme", PNG)
    an_hour_ago = time.time() - 3600
    tenant, name, expires, signature = _parts(store.signed_path("acme", image_id, an_hour_ago))
    with pytest.raises(Forbidden) as caught:
        store.open(tenant, name, expires, signature)
    assert caught.value.code == "url_expired"
    fresh_id = await store.save("acme", PNG)
    path = store.root / "acme" / f"{image_id}.png"
    os.utime(path, (an_hour_ago, an_hour_ago))
    assert store.remove_expired() == 1
    assert not path.exists()
    assert (store.root / "acme" / f"{fresh_id}.png").exists()
    # A URL still valid whose image was removed: 404.
    _, fresh_name, later, fresh_signature = _parts(store.signed_path("acme", image_id))
    with pytest.raises(NotFound):
        store.open("acme", fresh_name, later, fresh_signature)


def test_the_url_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = GatewaySettings(data_dir=tmp_path)
    first = load_url_secret(settings)
    assert len(first) >= 32
    assert load_url_secret(settings) == first
    assert (tmp_path / "gateway" / "image_url_secret").stat().st_mode & 0o777 == 0o600
    configured = GatewaySettings(data_dir=tmp_path, image_url_secret="s" * 40)
    assert load_url_secret(configured) == b"s" * 40
