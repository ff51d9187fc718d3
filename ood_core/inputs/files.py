"""Content fingerprints: sha256 of JSON-able objects and of files (memoised per process by size and mtime)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..memo import BoundedMemo

_checksums: BoundedMemo[str] = BoundedMemo(100_000)


def digest(obj: object) -> str:
    """sha256 of a JSON-serialisable object with sorted keys."""
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, default=str).encode()
    ).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per process by (path, size, mtime)."""
    stat = path.stat()

    def compute() -> str:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                sha.update(chunk)
        return sha.hexdigest()

    return _checksums.get((str(path), stat.st_size, stat.st_mtime_ns), compute)
