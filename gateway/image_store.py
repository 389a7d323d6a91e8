"""Generated images kept for their signed URLs: one PNG file per image, per tenant.

Files live under `<data_dir>/gateway/images/<tenant>/<image id>.png` and are
deleted once older than the URLs' life (`GATEWAY_IMAGE_URL_TTL_S`): a URL
never outlives its image by design, and no image outlives every URL to it.
A URL is signed with an HMAC-SHA256 key (`GATEWAY_IMAGE_URL_SECRET` or its
file; unset: a random key kept in `<data_dir>/gateway/image_url_secret`,
mode 0600) over the tenant, the image id and the expiry, so it reaches one
image of one tenant until it expires, without an API key. The key is never
logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

from common.caller import valid_tenant
from common.errors import Forbidden, NotFound
from gateway.settings import GatewaySettings

__all__ = ["ImageStore", "load_url_secret"]

logger = logging.getLogger("gateway.image_store")

_IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
_SECRET_FILE = "image_url_secret"
_MIN_SECRET_BYTES = 32


def load_url_secret(settings: GatewaySettings) -> bytes:
    """The URL signing key: the setting, its file, or one generated once under the data dir."""
    configured = settings.read_image_url_secret()
    if configured is not None:
        if len(configured) < _MIN_SECRET_BYTES:
            raise ValueError(f"the image URL key must hold at least {_MIN_SECRET_BYTES} bytes")
        return configured
    path = settings.data_dir / "gateway" / _SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Created once, readable by the gateway's user only; later starts (and other
        # gateways on the same data dir) read the same key, so URLs survive a restart.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return path.read_bytes().strip()


def _not_found() -> NotFound:
    return NotFound("No such image (it may have expired).", param=None, code="image_not_found")


class ImageStore:
    """Stores PNGs per tenant, signs URLs to them, serves them while a URL is valid."""

    def __init__(self, root: Path, secret: bytes, ttl_s: int) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self._secret = secret

    def _path(self, tenant: str, image_id: str) -> Path:
        return self.root / tenant / f"{image_id}.png"

    async def save(self, tenant: str, png: bytes) -> str:
        """Keep `png` for `tenant`; its image id."""
        image_id = uuid.uuid4().hex
        path = self._path(tenant, image_id)
        await asyncio.to_thread(_write, path, png)
        return image_id

    def _signature(self, tenant: str, image_id: str, expires: int) -> str:
        message = f"{tenant}/{image_id}/{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def signed_path(self, tenant: str, image_id: str, now: float | None = None) -> str:
        """The path and query of the URL to the image, valid for `ttl_s` from `now`."""
        expires = int(now if now is not None else time.time()) + self.ttl_s
        query = urlencode(
            {"expires": expires, "signature": self._signature(tenant, image_id, expires)}
        )
        return f"/images/{tenant}/{image_id}.png?{query}"

    def open(self, tenant: str, name: str, expires: int, signature: str) -> Path:
        """The file a signed URL names: 403 for a bad signature or an expired URL, 404 when
        the image is gone."""
        image_id = name.removesuffix(".png")
        if not (name.endswith(".png") and valid_tenant(tenant) and _IMAGE_ID.match(image_id)):
            raise _not_found()
        expected = self._signature(tenant, image_id, expires)
        if not hmac.compare_digest(expected, signature):
            raise Forbidden(
                "The image URL's signature does not match.", param="signature",
                code="invalid_signature",
            )  # fmt: skip
        if expires < time.time():
            raise Forbidden("The image URL has expired.", param="expires", code="url_expired")
        path = self._path(tenant, image_id)
        if not path.is_file():
            raise _not_found()
        return path

    def remove_expired(self, now: float | None = None) -> int:
        """Delete images older than a URL's life; how many were deleted."""
        cutoff = (now if now is not None else time.time()) - self.ttl_s
        removed = 0
        for path in self.root.glob("*/*.png"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # removed by another gateway on the same data dir
        return removed

    async def clean_up_forever(self) -> None:
        """Run `remove_expired` every half URL life (at most every 5 minutes)."""
        interval = min(max(self.ttl_s / 2, 0.5), 300.0)
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await asyncio.to_thread(self.remove_expired)
            except OSError as exc:
                logger.warning("expired images not removed", extra={"error": repr(exc)})
                continue
            if removed:
                logger.info("expired images removed", extra={"count": removed})


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)  # never a half-written image behind a URL
