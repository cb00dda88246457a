"""Attachments: images lose every piece of metadata (and stay upright); the rest is flagged."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image, ImageCms
from PIL.ExifTags import GPS, IFD, Base

from channels.base import RetryableSendError
from channels.media import (
    FLAG_NOT_SCRUBBED,
    MediaRejectedError,
    MediaTooLargeError,
    download_capped,
    media_kind,
    scrub,
)
from tests.fakes import Router


def _gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[Base.Make] = "PhoneMaker"
    exif[Base.Model] = "Reporter's phone"
    exif[Base.Orientation] = orientation
    exif[Base.DateTime] = "2024:05:01 21:14:03"
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "S"
    gps[GPS.GPSLatitude] = (1.0, 17.0, 31.56)
    gps[GPS.GPSLongitudeRef] = "E"
    gps[GPS.GPSLongitude] = (36.0, 49.0, 18.84)
    return exif


def _image(fmt: str, size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    picture = Image.new("RGB", size, (200, 30, 30))
    picture.paste((20, 30, 200), (0, 0, size[0] // 2, size[1] // 2))  # a blue top-left corner
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def test_jpeg_with_gps_loses_all_exif_and_keeps_its_pixels() -> None:
    original = _image("JPEG", exif=_gps_exif(), comment=b"taken at 12 Mombasa Road")
    assert _open(original).getexif().get_ifd(IFD.GPSInfo)  # the fixture really carries GPS

    result = scrub(original, "image/jpeg")

    assert result.metadata_removed and result.flagged_reason is None
    assert result.content_type == "image/jpeg"
    cleaned = _open(result.data)
    assert cleaned.size == (64, 48)
    assert len(cleaned.getexif()) == 0
    assert "exif" not in cleaned.info and "comment" not in cleaned.info
    assert b"Exif" not in result.data and b"PhoneMaker" not in result.data
    assert b"Mombasa" not in result.data
    # The picture itself is the same (JPEG re-encoding moves colours a little, not much).
    red = cleaned.getpixel((60, 40))
    assert isinstance(red, tuple) and red[0] > 150 and red[2] < 80


def test_orientation_is_applied_before_the_tag_is_dropped() -> None:
    # Orientation 6: the viewer must rotate 90° clockwise. Stored 64x48 -> shown 48x64.
    original = _image("JPEG", exif=_gps_exif(orientation=6))
    cleaned = _open(scrub(original, "image/jpeg").data)
    assert cleaned.size == (48, 64)
    assert len(cleaned.getexif()) == 0
    # The blue corner (stored top-left) is now top-right, as the reporter saw it.
    blue = cleaned.getpixel((40, 5))
    assert isinstance(blue, tuple) and blue[2] > 150


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("WEBP", "image/webp"),
                                                   ("GIF", "image/gif")])
def test_other_formats_are_reencoded_without_metadata(fmt: str, content_type: str) -> None:
    save: dict[str, Any] = {"exif": _gps_exif()} if fmt != "GIF" else {"comment": b"Amina"}
    if fmt == "PNG":
        save["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = _image(fmt, **save)
    result = scrub(original, content_type)
    cleaned = _open(result.data)
    assert result.content_type == content_type and result.metadata_removed
    assert cleaned.size == (64, 48)
    assert len(cleaned.getexif()) == 0
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(cleaned.info)


def test_an_image_sent_as_a_document_is_recognized_and_scrubbed() -> None:
    # Telegram "send as file" keeps the GPS tags and says application/octet-stream.
    original = _image("JPEG", exif=_gps_exif())
    result = scrub(original, "application/octet-stream")
    assert result.metadata_removed and result.content_type == "image/jpeg"
    assert len(_open(result.data).getexif()) == 0


def test_something_claiming_to_be_an_image_that_does_not_decode_is_rejected() -> None:
    with pytest.raises(MediaRejectedError):
        scrub(b"<html>not a picture</html>", "image/jpeg")
    with pytest.raises(MediaRejectedError):
        scrub(b"\xff\xd8\xff\xe0" + b"\x00" * 40, "application/octet-stream")  # broken JPEG


@pytest.mark.parametrize("content_type", ["audio/ogg", "video/mp4", "application/pdf"])
def test_audio_video_and_documents_are_flagged_unchanged(content_type: str) -> None:
    data = b"%PDF-1.7 /Author (Amina)" if content_type == "application/pdf" else b"\x00\x01data"
    result = scrub(data, content_type)
    assert result.data == data
    assert not result.metadata_removed
    assert result.flagged_reason == FLAG_NOT_SCRUBBED


def test_scrubbed_repr_does_not_show_the_bytes() -> None:
    assert "Mombasa" not in repr(scrub(b"Mombasa", "text/plain"))


def test_media_kind() -> None:
    assert [media_kind(t) for t in ("image/jpeg", "audio/ogg", "video/mp4", "application/pdf",
                                    "")] == ["image", "audio", "video", "document", "document"]


# --- capped downloads ---------------------------------------------------------------------


async def test_download_is_capped() -> None:
    def files(request: httpx.Request) -> httpx.Response:
        size = int(request.url.path.strip("/"))
        return httpx.Response(200, content=b"x" * size)

    async with httpx.AsyncClient(transport=Router({"files.test": files})) as http:
        assert await download_capped(http, "https://files.test/100", max_bytes=100) == b"x" * 100
        with pytest.raises(MediaTooLargeError):
            await download_capped(http, "https://files.test/101", max_bytes=100)


async def test_download_transport_errors_are_retryable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=Router({"files.test": down})) as http:
        with pytest.raises(RetryableSendError):
            await download_capped(http, "https://files.test/1", max_bytes=100)
