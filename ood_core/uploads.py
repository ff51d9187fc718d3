"""Try your own images: read uploaded PNG/JPEG files (single or zipped) safely, in memory, and score them.

Nothing is written to disk. Limits: ``MAX_FILE_BYTES`` per file (also for each zip member, whatever its header
claims), ``MAX_IMAGES`` per upload, ``MAX_PIXELS`` per image (checked from the header before decoding, so
decompression bombs are refused without allocating them). Anything else is rejected with a reason, never raised.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .cache import FeatureSet
from .data import ImageSet
from .evaluation import WorkspaceFeatures
from .extract import MemorySink, extract
from .models import LoadedModel
from .scores.registry import Method

MAX_FILE_BYTES = 10 * 2**20
MAX_IMAGES = 64
MAX_PIXELS = 6000 * 6000
FORMATS = ("PNG", "JPEG")
FLAG_PERCENTILE = 5.0  # below the 5th percentile of ID scores = rejected at 95% TPR


@dataclass
class Uploads:
    """Accepted images (name → RGB/L/RGBA PIL image, fully decoded) and rejected files (name, reason)."""

    images: dict[str, Image.Image] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def read_uploads(
    files: Sequence[tuple[str, bytes]],
    max_images: int = MAX_IMAGES,
    max_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Uploads:
    """Decode ``(file name, content)`` pairs; ``.zip`` files are expanded (one level, images only)."""
    result = Uploads()
    for name, data in files:
        if zipfile.is_zipfile(io.BytesIO(data)):
            members = _zip_members(name, data, max_bytes, result)
        else:
            members = [(name, data)]
        for member, content in members:
            if len(result.images) >= max_images:
                result.rejected.append(
                    (member, f"over the limit of {max_images} images per upload")
                )
                continue
            _accept(member, content, max_bytes, max_pixels, result)
    return result


def _zip_members(
    name: str, data: bytes, max_bytes: int, result: Uploads
) -> list[tuple[str, bytes]]:
    members = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                path = PurePosixPath(info.filename)
                if (
                    info.is_dir()
                    or path.name.startswith(".")
                    or "__MACOSX" in path.parts
                ):
                    continue
                label = f"{name}/{info.filename}"
                if info.file_size > max_bytes:
                    result.rejected.append(
                        (label, _too_large(info.file_size, max_bytes))
                    )
                    continue
                with archive.open(info) as member:
                    content = member.read(max_bytes + 1)  # headers can lie
                if len(content) > max_bytes:
                    result.rejected.append((label, _too_large(len(content), max_bytes)))
                    continue
                members.append((label, content))
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
        result.rejected.append((name, f"unreadable zip file ({exc})"))
    return members


def _too_large(size: int, limit: int) -> str:
    return f"{size / 2**20:.1f} MiB is larger than the {limit / 2**20:.0f} MiB limit"


def _accept(
    name: str, data: bytes, max_bytes: int, max_pixels: int, result: Uploads
) -> None:
    if len(data) > max_bytes:
        result.rejected.append((name, _too_large(len(data), max_bytes)))
        return
    try:
        with warnings.catch_warnings():
            # PIL warns on big headers; the size is checked below, before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            decoded = _decode(data, max_pixels)
        if isinstance(decoded, str):
            result.rejected.append((name, decoded))
        else:
            result.images[name] = decoded
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.rejected.append((name, f"not a readable image: {reason}"))


def _decode(data: bytes, max_pixels: int) -> Image.Image | str:
    """The fully decoded image, or why it is refused."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format not in FORMATS:
            return f"not a PNG or JPEG image ({image.format or 'unknown'})"
        width, height = image.size
        if width * height > max_pixels:
            reason = f"{width}×{height} pixels exceeds the {max_pixels:,}-pixel limit"
            return f"{reason} (possible decompression bomb)"
        image.load()
        decoded = image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB")
        return decoded.copy()


def upload_features(model: LoadedModel, uploads: Uploads) -> FeatureSet:
    """The uploaded images through ``model`` with the same statistics as a cache entry (kept in memory)."""
    names = list(uploads.images)
    images = ImageSet(
        lambda row: uploads.images[names[row]],
        np.full(len(names), -1),
        names,
        model.transform,
    )
    sink = MemorySink()
    report = extract(model.module, model.probes, images, sink)
    # Per-set memos (e.g. KNN distances) key on root + "created": make it the content's digest.
    digest = hashlib.sha256(sink.arrays["penultimate"].tobytes()).hexdigest()
    meta = {
        **report,
        "rows": len(names),
        "model": model.fingerprint(),
        "created": digest,
    }
    meta["dataset"] = {"dataset": "uploads", "names": names}
    return FeatureSet(Path("<uploads>"), meta, sink.arrays)


def placement(
    features: WorkspaceFeatures, uploads: FeatureSet, methods: Sequence[Method]
) -> pd.DataFrame:
    """Where each upload falls among the ID test scores, per method (default parameters).

    Columns: image, method, score, ID percentile (share of ID test images scoring lower, %), verdict
    ("OOD-like" below the 5th percentile, the threshold that keeps 95% of ID).
    """
    names = uploads.meta["dataset"]["names"]
    frames = []
    for method in methods:
        reference = np.sort(features.score_set(method, features.id_test))
        scores = features.score_set(method, uploads)
        percentile = (
            100 * np.searchsorted(reference, scores, side="left") / len(reference)
        )
        frames.append(
            pd.DataFrame(
                {
                    "image": names,
                    "method": method.label,
                    "score": scores,
                    "ID percentile": percentile,
                    "verdict": np.where(
                        percentile < FLAG_PERCENTILE, "OOD-like", "ID-like"
                    ),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
