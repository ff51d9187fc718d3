"""Where things live: the feature cache, the data root and the optional registry file.

Environment variables (all optional):
- ``OOD_LAB_CACHE_DIR``: the feature cache (default ``<repo>/cached_features``).
- ``OOD_LAB_DATA_ROOT``: real datasets and weights are read only inside this folder (default ``./data``).
- ``OOD_LAB_CONFIG``: a TOML file registering real models and datasets (default ``<data root>/ood_lab.toml``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import DataPathError

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_PATH = 1024


@functools.lru_cache(maxsize=64)
def _resolved(path: str, cwd: str) -> Path:
    """``path`` made absolute against ``cwd`` with symlinks resolved, once per (path, cwd): the pages ask for these
    folders hundreds of times a run, and each ``resolve`` costs a system call per path component. A folder that is
    created, or becomes a link, later is still opened through the kernel's own lookup; the data-root access check
    alone needs the links as they are now (``fresh``)."""
    return (Path(cwd) / path).resolve()


def _setting(variable: str, default: str | os.PathLike, fresh: bool = False) -> Path:
    raw, cwd = str(os.environ.get(variable, default)), os.getcwd()
    return _resolved.__wrapped__(raw, cwd) if fresh else _resolved(raw, cwd)


def cache_dir() -> Path:
    return _setting("OOD_LAB_CACHE_DIR", REPO_ROOT / "cached_features")


def data_root(fresh: bool = False) -> Path:
    """The data root; ``fresh``: resolved now, links followed as they are at this moment (for the access check)."""
    return _setting("OOD_LAB_DATA_ROOT", "data", fresh)


def config_file() -> Path:
    return _setting("OOD_LAB_CONFIG", data_root() / "ood_lab.toml")


def resolve_data_path(path: str | os.PathLike) -> Path:
    """Resolve ``path`` (relative to the data root) and refuse anything outside the data root."""
    root = data_root(fresh=True)  # it may have become a link, or stopped being one
    text = str(path)
    if "\x00" in text:
        raise DataPathError("a path cannot contain a NUL byte")
    if len(text) > MAX_PATH:
        raise DataPathError(
            f"a path of {len(text):,} characters is too long (at most {MAX_PATH})"
        )
    try:
        resolved = (root / path).resolve()
        if not resolved.is_relative_to(root):
            raise DataPathError(
                f"path '{path}' lies outside the data root {root}; set OOD_LAB_DATA_ROOT or move the data inside it"
            )
        exists = resolved.exists()
    except (OSError, ValueError) as exc:
        raise DataPathError(
            f"path '{text[:80]}' cannot be used: {exc.strerror or exc}"
        ) from exc
    if not exists:
        raise DataPathError(f"path '{path}' does not exist under the data root {root}")
    return resolved
