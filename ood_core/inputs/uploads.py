"""Try your own images: read uploaded PNG/JPEG files (single or zipped) safely and frugally, in memory.

Nothing is written to disk, and an upload can only cost a bounded amount of memory, whatever it contains:

- one upload is at most ``MAX_UPLOAD_FILES`` files and ``MAX_UPLOAD_BYTES`` bytes (files past either cap are listed
  as refused, unread), and files are read one at a time;
- every file and zip member is read with a byte limit (``MAX_FILE_BYTES``, whatever a zip header claims), one member
  at a time; a zip is examined for at most ``MAX_MEMBERS`` entries and ``MAX_ZIP_BYTES`` decompressed bytes, and
  reading stops once ``MAX_IMAGES`` images are accepted;
- an image's size is checked from its header before decoding (``MAX_PIXELS``, so decompression bombs are refused
  without allocating them), the pixels decoded per upload are capped (``MAX_TOTAL_PIXELS``), and every accepted
  image is shrunk right after decoding so that its longer side is at most ``KEEP_SIDE`` pixels (the models read
  224 px at most), so what is kept is small;
- decoding is right: EXIF orientation is applied, 16-bit greyscale is scaled to 8 bits (not clipped), phone-camera
  MPO files are read as the JPEGs they are, and two files with the same name are kept apart.

Anything refused is listed with a reason in words; nothing raises.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_FILE_MIB = 10
MAX_FILE_BYTES = MAX_FILE_MIB * 2**20
MAX_UPLOAD_FILES = 64
MAX_UPLOAD_BYTES = 100 * 2**20
MAX_IMAGES = 64
MAX_PIXELS = 6000 * 6000
MAX_TOTAL_PIXELS = 4 * MAX_PIXELS
MAX_MEMBERS = 256
MAX_ZIP_BYTES = 64 * 2**20
KEEP_SIDE = (
    512  # the models read 224 px at most; an image kept for overlays costs ≤ 0.8 MB
)
FORMATS = ("PNG", "JPEG", "MPO")
ORIENTATION = 0x0112  # EXIF tag: how to turn the stored pixels to display them upright
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class Uploads:
    """Accepted images (unique name → L/RGB/RGBA PIL image, shrunk to ``KEEP_SIDE``) and refused files."""

    images: dict[str, Image.Image] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pixels_decoded: int = 0

    def add(self, name: str, image: Image.Image) -> None:
        unique, copy = name, 2
        while unique in self.images:
            unique, copy = f"{name} ({copy})", copy + 1
        self.images[unique] = image


@dataclass(frozen=True)
class Limits:
    images: int = MAX_IMAGES
    upload_files: int = MAX_UPLOAD_FILES
    upload_bytes: int = MAX_UPLOAD_BYTES
    file_bytes: int = MAX_FILE_BYTES
    pixels: int = MAX_PIXELS
    total_pixels: int = MAX_TOTAL_PIXELS
    members: int = MAX_MEMBERS
    zip_bytes: int = MAX_ZIP_BYTES


def read_uploads(
    files: Iterable[tuple[str, bytes]],
    max_images: int = MAX_IMAGES,
    max_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
    limits: Limits | None = None,
) -> Uploads:
    """Decode ``(file name, content)`` pairs, taken one at a time (a generator may free each file after it is
    read); ``.zip`` files are expanded (one level, images only)."""
    limits = limits or Limits(
        images=max_images, file_bytes=max_bytes, pixels=max_pixels
    )
    result = Uploads()
    received = 0
    for index, (name, data) in enumerate(files):
        if index >= limits.upload_files:
            result.rejected.append(
                (name, f"over the limit of {limits.upload_files} files per upload")
            )
            continue
        if received + len(data) > limits.upload_bytes:
            result.rejected.append(
                (
                    name,
                    f"the upload would exceed {limits.upload_bytes / 2**20:.0f} MiB in all",
                )
            )
            continue
        received += len(data)
        _read_file(name, data, limits, result)
    return result


def _read_file(name: str, data: bytes, limits: Limits, result: Uploads) -> None:
    """One uploaded file (an image or a zip of images) into ``result``."""
    members = (
        _zip_members(name, data, limits, result)
        if zipfile.is_zipfile(io.BytesIO(data))
        else None
    )
    for member, content in members if members is not None else [(name, data)]:
        if len(result.images) >= limits.images:
            result.rejected.append(
                (member, f"over the limit of {limits.images} images per upload")
            )
            if members is not None:
                members.close()
            return
        _accept(member, content, limits, result)


def _zip_members(
    name: str, data: bytes, limits: Limits, result: Uploads
) -> Iterator[tuple[str, bytes]]:
    """The zip's image members one at a time, each read with a byte limit; refusals go to ``result``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total = 0
            for count, info in enumerate(archive.infolist()):
                if count >= limits.members:
                    result.rejected.append(
                        (name, f"only the first {limits.members} zip entries are read")
                    )
                    return
                path = PurePosixPath(info.filename)
                if (
                    info.is_dir()
                    or path.name.startswith(".")
                    or "__MACOSX" in path.parts
                ):
                    continue
                label = f"{name}/{info.filename}"
                if info.file_size > limits.file_bytes:
                    result.rejected.append(
                        (label, _too_large(info.file_size, limits.file_bytes))
                    )
                    continue
                budget = min(limits.file_bytes, limits.zip_bytes - total)
                if budget <= 0:
                    result.rejected.append(
                        (
                            name,
                            f"more than {limits.zip_bytes // 2**20} MiB once unpacked",
                        )
                    )
                    return
                try:
                    with archive.open(info) as member:
                        content = member.read(budget + 1)  # headers can lie
                except (
                    zipfile.BadZipFile,
                    OSError,
                    NotImplementedError,
                    RuntimeError,
                    EOFError,
                ) as exc:
                    result.rejected.append(
                        (label, f"unreadable zip member ({_words(exc)})")
                    )
                    continue
                total += len(content)
                if len(content) > budget:
                    reason = (
                        _too_large(len(content), limits.file_bytes)
                        if budget == limits.file_bytes
                        else f"the zip unpacks to more than {limits.zip_bytes // 2**20} MiB"
                    )
                    result.rejected.append((label, reason))
                    continue
                yield label, content
    except (
        zipfile.BadZipFile,
        OSError,
        NotImplementedError,
        RuntimeError,
        EOFError,
    ) as exc:
        result.rejected.append((name, f"unreadable zip file ({_words(exc)})"))


def _too_large(size: int, limit: int) -> str:
    return f"{size / 2**20:.1f} MiB is larger than the {limit / 2**20:.0f} MiB limit"


def _words(exc: Exception) -> str:
    """An exception as a reason a person can read (PIL's messages name in-memory objects)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if "<_io." not in text else type(exc).__name__


def _accept(name: str, data: bytes, limits: Limits, result: Uploads) -> None:
    if len(data) > limits.file_bytes:
        result.rejected.append((name, _too_large(len(data), limits.file_bytes)))
        return
    try:
        with warnings.catch_warnings():
            # PIL warns on big headers; the size is checked below, before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            decoded = _decode(data, limits, result)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        result.rejected.append((name, f"not a readable image: {_words(exc)}"))
        return
    if isinstance(decoded, str):
        result.rejected.append((name, decoded))
    else:
        result.add(name, decoded)


def _decode(data: bytes, limits: Limits, result: Uploads) -> Image.Image | str:
    """The decoded, oriented and shrunk image, or why it is refused."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format not in FORMATS:
            return f"not a PNG or JPEG image ({image.format or 'unknown'})"
        width, height = image.size
        if width * height > limits.pixels:
            return f"{width}×{height} pixels exceeds the {limits.pixels:,}-pixel limit (possible decompression bomb)"
        if result.pixels_decoded + width * height > limits.total_pixels:
            return f"this upload already decoded {result.pixels_decoded:,} pixels (limit {limits.total_pixels:,})"
        result.pixels_decoded += width * height
        if image.format in ("JPEG", "MPO"):
            image.draft(
                image.mode, (KEEP_SIDE, KEEP_SIDE)
            )  # decode at a reduced scale when that is enough
        image.load()
        orientation = image.getexif().get(ORIENTATION, 1)
        kept = _shrunk(_eight_bit(image))
    return (
        kept.transpose(TRANSPOSES[orientation]) if orientation in TRANSPOSES else kept
    )


def _eight_bit(image: Image.Image) -> Image.Image:
    """L, RGB or RGBA; 16- and 32-bit greyscale are scaled to 0–255 (a plain convert would clip them to white)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode.startswith("I"):
        values = np.asarray(image, np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return Image.fromarray(
            np.clip(np.round(values * 255 / top), 0, 255).astype(np.uint8), "L"
        )
    if image.mode == "F":
        values = np.asarray(image, np.float64)
        return Image.fromarray(
            np.clip(np.round(values * 255), 0, 255).astype(np.uint8), "L"
        )
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def _shrunk(image: Image.Image) -> Image.Image:
    """``image`` with its longer side at most ``KEEP_SIDE``: an integer box reduction first, then an exact resize,
    never a second full-size copy (the decoded full-size pixels are released with ``image``)."""
    factor = max(image.size) // KEEP_SIDE
    if factor >= 2:
        image = image.reduce(factor)
    if max(image.size) > KEEP_SIDE:
        image.thumbnail((KEEP_SIDE, KEEP_SIDE), Image.Resampling.LANCZOS)
    return image
