"""Attachments: capped downloads from providers, and metadata removal before anything is kept.

Owns `scrub()`: images (JPEG, PNG, WebP, GIF, and anything else Pillow decodes) are re-encoded
from pixel data alone, so EXIF (GPS position, camera serial, time), XMP, IPTC, ICC profiles and
comments are gone; the EXIF orientation is applied first so the picture stays upright. Images
are recognized by their bytes, not by the content type the provider claims: a photo sent to
Telegram "as a file" arrives as application/octet-stream with its GPS tags intact.
Audio, video and documents have no safe pure-Python scrubber here: they are returned unchanged
and flagged so officers check them before sharing.

It must never log, store or forward the bytes it handles, and never follow a provider's
redirect with our credentials to another host.

Exceptions:
    ChannelError
     └── MediaError
          ├── MediaTooLargeError   - over the configured size limit: not downloaded in full
          └── MediaRejectedError   - claims to be an image but does not decode (or is a bomb)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import httpx
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from channels.base import ChannelError, RetryableSendError

FLAG_NOT_SCRUBBED = "metadata not removed: officers, check before sharing"
# Far above any phone camera (50 megapixels), far below what exhausts memory when decoded.
MAX_PIXELS = 60_000_000

_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
# Decodable but not worth keeping as is (BMP, TIFF...): re-encoded as PNG.
_FALLBACK_FORMAT = "PNG"


class MediaError(ChannelError):
    """An attachment cannot be kept."""


class MediaTooLargeError(MediaError):
    """The file is bigger than the configured limit."""


class MediaRejectedError(MediaError):
    """The file claims to be an image but is not one we can decode safely."""


@dataclass(frozen=True)
class Scrubbed:
    data: bytes = field(repr=False)
    content_type: str
    metadata_removed: bool
    flagged_reason: str | None = None


def media_kind(content_type: str) -> str:
    """MediaRef.kind for a MIME type: image | audio | video | document."""
    major = content_type.split("/", 1)[0].strip().lower()
    return major if major in ("image", "audio", "video") else "document"


def looks_like_image(data: bytes) -> bool:
    """Magic numbers of the formats residents' phones produce."""
    return (
        data.startswith(b"\xff\xd8\xff")
        or data.startswith(b"\x89PNG\r\n\x1a\n")
        or data[:6] in (b"GIF87a", b"GIF89a")
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def scrub(data: bytes, content_type: str) -> Scrubbed:
    """Remove what a file says about its author; see the module docstring for what is covered."""
    if media_kind(content_type) == "image" or looks_like_image(data):
        return _scrub_image(data)
    return Scrubbed(
        data=data,
        content_type=content_type,
        metadata_removed=False,
        flagged_reason=FLAG_NOT_SCRUBBED,
    )


def _scrub_image(data: bytes) -> Scrubbed:
    try:
        with Image.open(io.BytesIO(data)) as source:
            original_format = source.format or ""
            width, height = source.size
            if width * height > MAX_PIXELS:
                raise MediaRejectedError("image too large to decode safely")
            source.load()
            # Only the first frame of an animated GIF/WebP is kept: a tip needs the picture.
            upright = ImageOps.exif_transpose(source) or source
            icc = source.info.get("icc_profile")
            pixels = _plain_mode(upright)
            pixels = _to_srgb(pixels, icc)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MediaRejectedError("not a decodable image") from exc

    out_format = original_format if original_format in _FORMATS else _FALLBACK_FORMAT
    if out_format == "JPEG" and pixels.mode not in ("RGB", "L"):
        pixels = pixels.convert("RGB")
    # A fresh image built from raw pixels carries no `info`: nothing can be copied over by the
    # encoders (PNG falls back to im.info for the ICC profile and text chunks).
    clean = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    buffer = io.BytesIO()
    if out_format == "JPEG":
        clean.save(buffer, "JPEG", quality=90)
    elif out_format == "WEBP":
        clean.save(buffer, "WEBP", quality=90)
    else:
        clean.save(buffer, out_format)
    return Scrubbed(data=buffer.getvalue(), content_type=_FORMATS[out_format], metadata_removed=True)


def _plain_mode(image: Image.Image) -> Image.Image:
    """Modes that survive a round trip through raw bytes (palettes and odd depths do not)."""
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if image.mode in ("P", "PA") or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")


def _to_srgb(image: Image.Image, icc: object) -> Image.Image:
    """Bake an embedded colour profile into the pixels, since the profile itself is dropped
    (profiles can name the device that made the picture)."""
    if not isinstance(icc, bytes) or not icc or image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image, source_profile, ImageCms.createProfile("sRGB"), outputMode=image.mode
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken profile: keep the pixels as they are
    return converted if converted is not None else image


async def download_capped(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109  (passed on to httpx)
) -> bytes:
    """GET `url`, following redirects, refusing to read more than `max_bytes`.

    httpx drops the Authorization header when a redirect leaves the origin, so Twilio's
    credentials never reach the CDN its media URLs redirect to. Errors never carry the URL
    (Telegram's file URLs contain the bot token).
    """
    try:
        async with http.stream(
            "GET", url, auth=auth, follow_redirects=True, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raise MediaError(f"media download failed: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise MediaTooLargeError("media over the size limit")
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise MediaTooLargeError("media over the size limit")
                chunks.append(chunk)
    except httpx.TransportError as exc:
        # A download is idempotent: whatever failed, trying again is safe.
        raise RetryableSendError(f"media download failed: {type(exc).__name__}") from exc
    return b"".join(chunks)
