"""The feature cache: one directory per (model, dataset split), written atomically and verified on load.

Layout: ``<root>/<model_key>/<entry_key>/`` holding ``meta.json`` and one ``.npy`` per array (``logits.npy``,
``blocks/layer4.0/max.npy`` …). An entry is built in a hidden temp directory beside it and moved in with
``os.replace``; a per-key ``filelock`` makes a second process wait and then read the first one's entry. Loads check
every file's size, shape, dtype and sha256 and memory-map the arrays; an entry that fails the check is reported,
removed and rebuilt — never a crash. A full sha256 pass, or the checksums taken while arrays are written whole, is
recorded in ``.verified.json`` (size, mtime, inode and checksum per file), so later loads re-hash only files that
changed since: a 1.6 GB CIFAR-size workspace then opens without reading it all, and arrays written whole into a new
entry (fitted states, prepared arrays) are not read back.

Besides extracted features (``kind: features``) the cache holds *derived* entries (``kind: derived``): fitted method
states, per-set prepared arrays, ODIN re-inference scores and trained decoders, keyed by what they were made from.

Deleting is safe by construction: the cache root carries a marker file (``.ood-lab-cache``) and so does every model
folder the cache created (``.ood-lab-model``); only key-named folders with a valid ``meta.json`` inside such a model
folder are entries. A folder without the markers is never deleted, whatever ``OOD_LAB_CACHE_DIR`` points at.
Files and folders are created with the user's umask (group-readable by default), so a cache can be shared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from .. import __version__
from ..errors import CacheError
from ..inputs import config
from ..inputs.files import digest, file_sha256
from ..memo import BoundedMemo

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
KNOWN_FORMATS = (1,)
ROOT_MARKER = ".ood-lab-cache"
MODEL_MARKER = ".ood-lab-model"
KEY_NAME = re.compile(r".+-[0-9a-f]{12}")
FEATURE_ARRAYS = ("logits", "penultimate", "labels", "index")
BLOCK_STATS = ("max", "mean", "l2")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        root: Path | None,
        meta: dict,
        arrays: dict[str, np.ndarray],
        notes: list[str] | None = None,
    ):
        self.root, self.meta, self._arrays, self.notes = root, meta, arrays, notes or []

    def __getitem__(self, name: str) -> np.ndarray:
        """The array ``name``; statistics stored as float16 (``extract --float16-stats``) are read as float32."""
        array = self._arrays[name]
        if array.dtype == np.float16:
            array = self._arrays[name] = array.astype(np.float32)
        return array

    def __contains__(self, name: object) -> bool:
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
        return list(self.meta.get("probes", []))

    @cached_property
    def fingerprint(self) -> str:
        """What the arrays are (their checksums; or the meta's ``created`` for in-memory sets); computed once, as
        every score and memo lookup asks for it."""
        files = self.meta.get("files")
        if files:
            return digest({name: spec.get("sha256") for name, spec in files.items()})[
                :16
            ]
        return str(self.meta.get("fingerprint") or self.meta.get("created") or id(self))

    def stat(self, block: str, stat: str) -> np.ndarray:
        """Per-channel statistic ``max``/``mean``/``l2`` [N,C] of ``block``'s post-ReLU output."""
        return self[f"blocks/{block}/{stat}"]

    def __len__(self) -> int:
        return int(self.meta["rows"])


class EntryWriter:
    """Writes arrays of a new entry into its temp directory, batch by batch, through memory maps."""

    def __init__(self, root: Path):
        self.root = root
        self._arrays: dict[str, np.memmap] = {}
        self._whole: dict[str, dict] = {}
        # Verification stamps of the arrays written whole (``put``): hashed from memory as they were written, then
        # closed. Arrays written through memory maps get none: the load after the build hashes them from the file.
        self.stamps: dict[str, list] = {}

    def write(self, name: str, start: int, values: np.ndarray, total_rows: int) -> None:
        """Write ``values`` at rows ``start:start+len(values)`` of array ``name`` ([total_rows, ...], created on first use)."""
        if name not in self._arrays:
            path = self._path(name)
            self._arrays[name] = np.lib.format.open_memmap(
                path, "w+", values.dtype, (total_rows, *values.shape[1:])
            )
        self._arrays[name][start : start + len(values)] = values

    def put(self, name: str, array: np.ndarray) -> None:
        """Write a whole array at once: one sequential write, its checksum taken from memory on the way."""
        array = np.ascontiguousarray(array)
        if not array.ndim:
            array = array.reshape(1)
        path, sha = self._path(name), hashlib.sha256()
        with open(path, "wb") as fh:
            _Hashing(fh, sha).write_array(array)
        stat = path.stat()
        self._whole[name] = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "bytes": stat.st_size,
            "sha256": sha.hexdigest(),
        }
        self.stamps[name] = _stamp(stat, sha.hexdigest())

    def _path(self, name: str) -> Path:
        path = self.root / f"{name}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def truncate(self, rows: int) -> None:
        """Keep only the first ``rows`` rows of every array written batch by batch (after skipped samples)."""
        for name, array in list(self._arrays.items()):
            if array.shape[0] != rows and not name.startswith("head/"):
                kept = np.array(array[:rows])
                del array, self._arrays[name]
                np.save(self.root / f"{name}.npy", kept)
                self._arrays[name] = np.load(self.root / f"{name}.npy", mmap_mode="r+")

    def finish(self) -> dict[str, dict]:
        """Describe every file (shape, dtype, bytes, sha256) for meta.json. Memory-mapped writes are not synced to
        disk here: the sha256 in meta.json catches a file that a crash of the machine left incomplete."""
        files = dict(self._whole)
        for name, array in self._arrays.items():
            path = self.root / f"{name}.npy"
            files[name] = {
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        self._arrays.clear()
        self._whole.clear()
        return files


class _Hashing:
    """A binary file that also feeds every byte written to a hash."""

    def __init__(self, fh, sha):
        self.fh, self.sha = fh, sha

    def write(self, data) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def write_array(self, array: np.ndarray) -> None:
        np.lib.format.write_array(self, array, allow_pickle=False)


@dataclass(frozen=True)
class EntryInfo:
    """One line of the cache inventory."""

    path: Path
    model: str
    dataset: str
    kind: str
    rows: int | None
    bytes: int
    created: str
    status: str  # "ok" or why not


class FeatureCache:
    """The ``cached_features/`` store (``root`` defaults to ``ood_core.inputs.config.cache_dir()``)."""

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
        model_dir = self._model_dir(key)
        try:
            lock = FileLock(str(model_dir / f"{key.entry_dir}.lock"))
            lock.acquire()
        except OSError as exc:
            raise self._unwritable(exc) from exc
        try:
            try:
                found = self.load(
                    key
                )  # another process may have built it while we waited
                if found is not None:
                    found.notes.extend(notes)
                    return found
            except CorruptEntry as exc:
                if not notes:
                    notes.append(f"cache entry {key} was corrupt ({exc}); rebuilt it")
                self._remove(self.path(key))
            for note in notes:
                log.warning(note)
            for stale in model_dir.glob(
                f".tmp-{key.entry_dir}-*"
            ):  # left by a killed process (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            self._build(key, build)
            created = _verified(self.path(key))
            created.notes.extend(notes)
            return created
        finally:
            lock.release()

    def _unwritable(self, exc: OSError) -> CacheError:
        return CacheError(
            f"cannot write to the feature cache {self.root} ({exc.strerror or exc}); "
            "make it writable or set OOD_LAB_CACHE_DIR to a writable folder"
        )

    def _model_dir(self, key: CacheKey) -> Path:
        """The key's model folder, created with the cache's markers."""
        model_dir = self.root / key.model_dir
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            marker = self.root / ROOT_MARKER
            if not marker.exists():
                marker.write_text(
                    json.dumps(
                        {"ood_lab_cache": True, "format_version": FORMAT_VERSION}
                    )
                )
            model_dir.mkdir(exist_ok=True)
            model_marker = model_dir / MODEL_MARKER
            if not model_marker.exists():
                model_marker.write_text(json.dumps({"model": key.model}, default=str))
        except OSError as exc:
            raise self._unwritable(exc) from exc
        return model_dir

    def _build(self, key: CacheKey, build: Callable[[EntryWriter], dict]) -> None:
        model_dir = self.root / key.model_dir
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key.entry_dir}-", dir=model_dir))
        except OSError as exc:
            raise self._unwritable(exc) from exc
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
                "kind": "features",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "model": key.model,
                "dataset": key.dataset,
                "rows": rows.pop() if len(rows) == 1 else None,
                "files": files,
                **extra,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            # arrays written whole are stamped as verified: the load that follows need not re-hash them
            _write_stamps(tmp, writer.stamps)
            _share(tmp)
            os.replace(tmp, self.path(key))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # --- inventory and deletion -------------------------------------------------------------------------------

    @property
    def marked(self) -> bool:
        """Whether the root carries the cache's marker (only then is anything in it ever deleted)."""
        return (self.root / ROOT_MARKER).is_file()

    def _model_dirs(self) -> Iterator[Path]:
        if not self.marked:
            return
        for model_dir in sorted(self.root.iterdir()):
            if (
                model_dir.is_dir()
                and not model_dir.is_symlink()
                and (model_dir / MODEL_MARKER).is_file()
            ):
                yield model_dir

    def _entry_dirs(self) -> Iterator[Path]:
        for model_dir in self._model_dirs():
            for folder in sorted(model_dir.iterdir()):
                if folder.is_dir() and not folder.is_symlink() and _is_entry(folder):
                    yield folder

    def entries(self, verify: bool = True) -> list[EntryInfo]:
        """Every entry, each verified (a truncated or edited file shows as corrupt); temp folders are not entries."""
        infos = []
        for folder in self._entry_dirs():
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            meta = _read_meta(folder) or {}
            status = "ok"
            if verify:
                try:
                    _verified(folder)
                except CorruptEntry as exc:
                    status = f"corrupt: {exc}"
            infos.append(
                EntryInfo(
                    folder,
                    folder.parent.name,
                    folder.name,
                    str(meta.get("kind", "features")),
                    meta.get("rows"),
                    size,
                    str(meta.get("created", "?")),
                    status,
                )
            )
        return infos

    def debris(self) -> list[Path]:
        """Stale temp folders, trash and lock files inside the cache's model folders."""
        found = []
        for model_dir in self._model_dirs():
            for item in model_dir.iterdir():
                if item.name.startswith((".tmp-", ".trash-")) or item.suffix == ".lock":
                    found.append(item)
        return sorted(found)

    def delete(self, entry: Path) -> None:
        """Remove one entry (it must be an entry of this cache: see the module docstring); its lock file goes
        too unless a live process holds it."""
        entry = Path(entry)
        if entry.resolve().parent.parent != self.root.resolve() or not self._owns(
            entry
        ):
            raise CacheError(
                f"{entry} is not an entry of the cache {self.root}; nothing was deleted"
            )
        self._remove(entry)
        _unlink_if_free(entry.parent / f"{entry.name}.lock")

    def _owns(self, entry: Path) -> bool:
        return (
            self.marked
            and entry.is_dir()
            and not entry.is_symlink()
            and (entry.parent / MODEL_MARKER).is_file()
            and _is_entry(entry)
        )

    def clear(self) -> int:
        """Remove every entry and the debris of interrupted builds; return how many entries were removed.

        Model weights (``models/``) are kept. Refused (``CacheError``) when the root lacks the cache's marker.
        """
        if not self.root.exists():
            return 0
        if not self.marked:
            raise CacheError(
                f"{self.root} is not an OOD Lab cache (no {ROOT_MARKER} marker); nothing was deleted"
            )
        entries = list(self._entry_dirs())
        for entry in entries:
            self._remove(entry)
        self._clear_debris()
        return len(entries)

    def _clear_debris(self) -> None:
        """Remove trash, and the temp folders and lock files of builds that no live process holds (a running
        extraction keeps its lock, so its temp folder and lock survive a ``clear`` and it finishes)."""
        debris = self.debris()
        locks = [item for item in debris if item.suffix == ".lock"]
        live = {lock.name.removesuffix(".lock") for lock in locks if _held(lock)}
        for item in debris:
            abandoned = item.name.startswith(".tmp-") and _build_key(item) not in live
            if abandoned or item.name.startswith(".trash-"):
                shutil.rmtree(item, ignore_errors=True)
        for lock in locks:
            if lock.name.removesuffix(".lock") not in live:
                _unlink_if_free(lock)

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


def _build_key(temp: Path) -> str:
    """The entry a build's temp folder belongs to: ``.tmp-<entry>-<random>`` (mkdtemp's suffix has no hyphen)."""
    return temp.name.removeprefix(".tmp-").rsplit("-", 1)[0]


def _held(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (a build in progress)."""
    try:
        with FileLock(str(lock), timeout=0):
            return False
    except Timeout:
        return True
    except OSError:
        return False


def _unlink_if_free(lock: Path) -> None:
    """Delete a lock file unless a live process holds it (it is removed while we hold it ourselves)."""
    try:
        with FileLock(str(lock), timeout=0):
            lock.unlink(missing_ok=True)
    except (Timeout, OSError):
        pass


def _share(folder: Path) -> None:
    """Permissions as the umask allows (mkdtemp makes 0700): group-readable caches stay readable."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_entry(folder: Path) -> bool:
    """A key-named folder holding a ``meta.json`` of a known format (the cache's own entries only)."""
    if folder.name.startswith(".") or not KEY_NAME.fullmatch(folder.name):
        return False
    meta = _read_meta(folder)
    return (
        meta is not None
        and meta.get("format_version") in KNOWN_FORMATS
        and isinstance(meta.get("files"), dict)
    )


def _verified(folder: Path) -> FeatureSet:
    """The entry at ``folder``, verified (``_opened_verified``) once per version of its files in this process.

    A page opens its workspace's entries on every run, for every user: when no file of the entry has changed since
    it was last verified here (same size, mtime and inode for meta.json and every array), its arrays are reused
    instead of being mapped and checked again. Any change is verified afresh."""
    signature = _signature(folder)
    if signature is None:
        return _opened_verified(folder)
    meta, arrays = _opened.get((str(folder), signature), lambda: _opened_parts(folder))
    return FeatureSet(folder, meta, arrays)


# meta and arrays per (entry, version of its files); 256: Setup lists every entry of the cache, too
_opened: BoundedMemo[tuple[dict, dict]] = BoundedMemo(256)


def _opened_parts(folder: Path) -> tuple[dict, dict]:
    opened = _opened_verified(folder)
    return opened.meta, opened._arrays


def _signature(folder: Path) -> tuple | None:
    """(name, size, mtime, inode) of meta.json and of every array it lists; ``None`` where one cannot be read."""
    meta = _read_meta(folder)
    if meta is None or not isinstance(meta.get("files"), dict):
        return None
    try:
        stats = [
            (name, os.stat(folder / name))
            for name in ["meta.json", *(f"{f}.npy" for f in meta["files"])]
        ]
    except (OSError, TypeError, ValueError):
        return None
    return tuple((n, s.st_size, s.st_mtime_ns, s.st_ino) for n, s in stats)


def _opened_verified(folder: Path) -> FeatureSet:
    """Open an entry, checking meta.json, the arrays a feature entry must hold, and every file's size, shape,
    dtype and checksum."""
    meta = _read_meta(folder)
    if meta is None or not isinstance(meta.get("files"), dict):
        raise CorruptEntry("unreadable meta.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorruptEntry(
            f"format version {meta.get('format_version')} ≠ {FORMAT_VERSION}"
        )
    files = meta["files"]
    if meta.get("kind", "features") == "features":
        probes = meta.get("probes")
        if not isinstance(probes, list):
            raise CorruptEntry("meta.json lists no probed blocks")
        expected = [
            *FEATURE_ARRAYS,
            *(f"blocks/{b}/{s}" for b in probes for s in BLOCK_STATS),
        ]
        missing = [name for name in expected if name not in files]
        if missing:
            raise CorruptEntry(f"meta.json lacks arrays {', '.join(missing[:3])}")
    arrays = {}
    stamps = _read_stamps(folder)
    checked = {}
    for name, spec in files.items():
        path = folder / f"{name}.npy"
        try:
            stat = path.stat()
            if stat.st_size != spec["bytes"]:
                raise CorruptEntry(
                    f"{name}.npy has {stat.st_size} bytes, expected {spec['bytes']}"
                )
            array = np.load(path, mmap_mode="r")
            if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
                raise CorruptEntry(
                    f"{name}.npy is {array.dtype}{list(array.shape)}, expected {spec['dtype']}{spec['shape']}"
                )
            stamp = _stamp(stat, spec["sha256"])
            # Hash only the files that changed, or were never checked, since the last
            # full verification.
            changed = stamps.get(name) != stamp
            if changed and file_sha256(path) != spec["sha256"]:
                raise CorruptEntry(f"{name}.npy checksum mismatch")
            checked[name] = stamp
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptEntry(f"{name}.npy unreadable: {exc}") from exc
        arrays[name] = array
    if checked != stamps:
        _write_stamps(folder, checked)
    return FeatureSet(folder, meta, arrays)


STAMPS = ".verified.json"


def _stamp(stat: os.stat_result, sha256: str) -> list:
    """What a verified file is recognised by: its size, mtime, inode and checksum."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, sha256]


def _read_stamps(folder: Path) -> dict:
    """Per file: (size, mtime, inode, sha256) when its checksum was last verified in full."""
    try:
        stamps = json.loads((folder / STAMPS).read_text())
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamps(folder: Path, stamps: dict) -> None:
    """Record the verification so the next process only re-hashes files whose size, mtime or inode changed; a
    cache that cannot be written is simply verified in full each time."""
    tmp = folder / f".verified-{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(stamps))
        os.replace(tmp, folder / STAMPS)
    except OSError:
        tmp.unlink(missing_ok=True)
