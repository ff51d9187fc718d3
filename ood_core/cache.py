"""The feature cache: one directory per (model, dataset split), written atomically and verified on load.

Layout: ``<root>/<model_key>/<dataset_key>/`` holding ``meta.json`` and one ``.npy`` per array (``logits.npy``,
``blocks/layer4.0/max.npy`` …). An entry is built in a hidden temp directory beside it and moved in with
``os.replace``; a per-key ``filelock`` makes a second process wait and then read the first one's entry. Loads check
every file's size, shape, dtype and sha256 (memoised per process by size and mtime) and memory-map the arrays; an
entry that fails the check is reported, removed and rebuilt — never a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from . import __version__, config
from .errors import CacheError
from .memo import BoundedMemo

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
_checksum_memo: BoundedMemo[str] = BoundedMemo(100_000)


def digest(obj: object) -> str:
    """sha256 of a JSON-serialisable object with sorted keys."""
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, default=str).encode()
    ).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per process by (path, size, mtime)."""
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)

    def compute() -> str:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                sha.update(chunk)
        return sha.hexdigest()

    return _checksum_memo.get(memo_key, compute)


@dataclass(frozen=True)
class CacheKey:
    """Where an entry lives: ``<model_dir>/<entry_dir>``, both named for humans and suffixed with a fingerprint."""

    model_dir: str
    entry_dir: str
    model: dict
    dataset: dict

    @classmethod
    def create(cls, model: dict, dataset: dict) -> CacheKey:
        model_dir = f"{model['name']}-{digest(model)[:12]}"
        label = "-".join(
            str(dataset[k]) for k in ("dataset", "split", "variant") if k in dataset
        )
        entry_dir = (
            f"{label}-{digest({'dataset': dataset, 'format': FORMAT_VERSION})[:12]}"
        )
        return cls(model_dir, entry_dir, model, dataset)

    def __str__(self) -> str:
        return f"{self.model_dir}/{self.entry_dir}"


class CorruptEntry(Exception):
    """An entry failed verification (internal: the cache turns it into a rebuild)."""


class FeatureSet:
    """A verified, read-only cache entry: memory-mapped arrays plus ``meta``.

    ``notes`` lists what happened on the way (e.g. a corrupt entry that was rebuilt), for the UI to show.
    """

    def __init__(
        self,
        root: Path,
        meta: dict,
        arrays: dict[str, np.ndarray],
        notes: list[str] | None = None,
    ):
        self.root, self.meta, self._arrays, self.notes = root, meta, arrays, notes or []

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    @property
    def names(self) -> list[str]:
        return list(self._arrays)

    @property
    def logits(self) -> np.ndarray:
        return self._arrays["logits"]

    @property
    def penultimate(self) -> np.ndarray:
        return self._arrays["penultimate"]

    @property
    def labels(self) -> np.ndarray:
        return self._arrays["labels"]

    @property
    def blocks(self) -> list[str]:
        return list(self.meta["probes"])

    def stat(self, block: str, stat: str) -> np.ndarray:
        """Per-channel statistic ``max``/``mean``/``l2`` [N,C] of ``block``'s post-ReLU output."""
        return self._arrays[f"blocks/{block}/{stat}"]

    def __len__(self) -> int:
        return int(self.meta["rows"])


class EntryWriter:
    """Writes arrays of a new entry into its temp directory, batch by batch, through memory maps."""

    def __init__(self, root: Path):
        self.root = root
        self._arrays: dict[str, np.memmap] = {}

    def write(self, name: str, start: int, values: np.ndarray, total_rows: int) -> None:
        """Write ``values`` at rows ``start:start+len(values)`` of array ``name`` ([total_rows, ...], created on first use)."""
        if name not in self._arrays:
            path = self.root / f"{name}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._arrays[name] = np.lib.format.open_memmap(
                path, "w+", values.dtype, (total_rows, *values.shape[1:])
            )
        self._arrays[name][start : start + len(values)] = values

    def put(self, name: str, array: np.ndarray) -> None:
        """Write a whole (small) array at once."""
        self.write(name, 0, np.ascontiguousarray(array), len(array))

    def truncate(self, rows: int) -> None:
        """Keep only the first ``rows`` rows of every row-indexed array (after skipped samples)."""
        for name, array in list(self._arrays.items()):
            if array.shape[0] != rows and not name.startswith("head/"):
                kept = np.array(array[:rows])
                del array, self._arrays[name]
                np.save(self.root / f"{name}.npy", kept)
                self._arrays[name] = np.load(self.root / f"{name}.npy", mmap_mode="r+")

    def finish(self) -> dict[str, dict]:
        """Flush and describe every file (shape, dtype, bytes, sha256) for meta.json."""
        files = {}
        for name, array in self._arrays.items():
            array.flush()
            path = self.root / f"{name}.npy"
            files[name] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        self._arrays.clear()
        return files


@dataclass(frozen=True)
class EntryInfo:
    """One line of the cache inventory."""

    path: Path
    model: str
    dataset: str
    rows: int | None
    bytes: int
    created: str
    status: str  # "ok" or why not


class FeatureCache:
    """The ``cached_features/`` store (``root`` defaults to ``ood_core.config.cache_dir()``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else config.cache_dir()

    def path(self, key: CacheKey) -> Path:
        return self.root / key.model_dir / key.entry_dir

    def load(self, key: CacheKey) -> FeatureSet | None:
        """The verified entry, or ``None`` if it does not exist; raises ``CorruptEntry`` if it fails verification."""
        folder = self.path(key)
        if not folder.is_dir():
            return None
        return _verified(folder)

    def get_or_create(
        self, key: CacheKey, build: Callable[[EntryWriter], dict]
    ) -> FeatureSet:
        """Load the entry or build it: ``build(writer)`` writes the arrays and returns extra metadata.

        Safe across processes: one builds, the others wait on the key's lock and then load its result.
        """
        notes: list[str] = []
        try:
            found = self.load(key)
            if found is not None:
                return found
        except CorruptEntry as exc:
            notes.append(f"cache entry {key} was corrupt ({exc}); rebuilt it")
        model_dir = self.root / key.model_dir
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(model_dir / f"{key.entry_dir}.lock"))
            lock.acquire()
        except OSError as exc:
            raise CacheError(
                f"cannot write to the feature cache {self.root} ({exc.strerror}); "
                "make it writable or set OOD_LAB_CACHE_DIR to a writable folder"
            ) from exc
        try:
            try:
                # Another process may have built it while we waited for the lock.
                found = self.load(key)
                if found is not None:
                    found.notes.extend(notes)
                    return found
            except CorruptEntry as exc:
                if not notes:
                    notes.append(f"cache entry {key} was corrupt ({exc}); rebuilt it")
                self._remove(self.path(key))
            for note in notes:
                log.warning(note)
            # Temp dirs of this key were left by a killed process (we hold the lock).
            for stale in model_dir.glob(f".tmp-{key.entry_dir}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            self._build(key, build)
            created = _verified(self.path(key))
            created.notes.extend(notes)
            return created
        finally:
            lock.release()

    def _build(self, key: CacheKey, build: Callable[[EntryWriter], dict]) -> None:
        model_dir = self.root / key.model_dir
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key.entry_dir}-", dir=model_dir))
        except OSError as exc:
            raise CacheError(
                f"cannot write to the feature cache {self.root} ({exc.strerror}); "
                "make it writable or set OOD_LAB_CACHE_DIR to a writable folder"
            ) from exc
        try:
            writer = EntryWriter(tmp)
            extra = build(writer)
            files = writer.finish()
            rows = {
                spec["shape"][0]
                for name, spec in files.items()
                if not name.startswith("head/")
            }
            meta = {
                "format_version": FORMAT_VERSION,
                "library_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "model": key.model,
                "dataset": key.dataset,
                "rows": rows.pop() if len(rows) == 1 else None,
                "files": files,
                **extra,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            os.replace(tmp, self.path(key))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def entries(self) -> list[EntryInfo]:
        """Every visible entry (temp directories of unfinished builds are not entries)."""
        infos = []
        for folder in sorted(self._entry_dirs()):
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            try:
                meta = json.loads((folder / "meta.json").read_text())
                infos.append(
                    EntryInfo(
                        folder,
                        folder.parent.name,
                        folder.name,
                        meta.get("rows"),
                        size,
                        meta.get("created", "?"),
                        "ok",
                    )
                )
            except (OSError, ValueError) as exc:
                infos.append(
                    EntryInfo(
                        folder,
                        folder.parent.name,
                        folder.name,
                        None,
                        size,
                        "?",
                        f"unreadable meta.json: {exc}",
                    )
                )
        return infos

    def _entry_dirs(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for model_dir in self.root.iterdir():
            if (
                model_dir.is_dir()
                and not model_dir.name.startswith(".")
                and model_dir.name != "models"
            ):
                yield from (
                    d
                    for d in model_dir.iterdir()
                    if d.is_dir() and not d.name.startswith(".")
                )

    def delete(self, entry: Path) -> None:
        """Remove one entry directory (must lie inside this cache)."""
        entry = Path(entry).resolve()
        if entry.parent.parent != self.root.resolve() or not entry.is_dir():
            raise CacheError(f"{entry} is not an entry of the cache {self.root}")
        self._remove(entry)

    def clear(self) -> int:
        """Remove every entry; return how many were removed. The demo model's weights are kept."""
        entries = list(self._entry_dirs())
        for entry in entries:
            self._remove(entry)
        return len(entries)

    @staticmethod
    def _remove(entry: Path) -> None:
        """Rename out of sight first (atomic), then delete."""
        trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(entry, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CacheError(
                f"cannot remove cache entry {entry} ({exc.strerror})"
            ) from exc
        shutil.rmtree(trash, ignore_errors=True)


def _verified(folder: Path) -> FeatureSet:
    """Open an entry, checking meta.json and every file's size, shape, dtype and checksum."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        files = meta["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptEntry(f"unreadable meta.json: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorruptEntry(
            f"format version {meta.get('format_version')} ≠ {FORMAT_VERSION}"
        )
    arrays = {}
    for name, spec in files.items():
        path = folder / f"{name}.npy"
        try:
            if path.stat().st_size != spec["bytes"]:
                raise CorruptEntry(
                    f"{name}.npy has {path.stat().st_size} bytes, expected {spec['bytes']}"
                )
            array = np.load(path, mmap_mode="r")
            if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
                raise CorruptEntry(
                    f"{name}.npy is {array.dtype}{list(array.shape)}, expected {spec['dtype']}{spec['shape']}"
                )
            if file_sha256(path) != spec["sha256"]:
                raise CorruptEntry(f"{name}.npy checksum mismatch")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptEntry(f"{name}.npy unreadable: {exc}") from exc
        arrays[name] = array
    return FeatureSet(folder, meta, arrays)
