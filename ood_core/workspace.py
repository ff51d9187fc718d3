"""A workspace: a model, its ID set and the OOD sets, loaded from the cache and scored by any method.

``Workspace`` holds the names; ``LoadedWorkspace`` holds the cached feature sets and does everything a method needs
besides its pure functions: it resolves parameters (paper defaults for the model's benchmark, the last block, the
NormRatio block), fits a method's state once per ID train entry (memoised per process and stored in the feature cache
as a derived entry, so the next process reads it), prepares per-set arrays once, supplies re-inference arrays (ODIN)
and memoises score vectors, so that a slider move recomputes only what its parameter changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .engine.cache import CacheKey, CorruptEntry, FeatureCache, FeatureSet
from .engine.features import cached_feature_set, feature_set
from .engine.images import pixels
from .engine.reinference import odin_feature_set
from .errors import OODLabError
from .inputs import catalog
from .inputs.files import digest
from .inputs.variants import JIGSAW_DEFAULT_N, jigsaw_base_rows, jigsaw_name
from .memo import BoundedMemo
from .metrics import id_accuracy
from .scores.block_norm import norm_ratio, select_block
from .scores.method import (
    SELECTED_BLOCK,
    Fit,
    Method,
    Overlay,
    Prepare,
    own_params,
    part_params,
)

Progress = Callable[[str, int, int], None]
DEMO_OOD = ("letters", "textures", "photos", "faces", "noise")


@dataclass(frozen=True)
class Workspace:
    """What the user is looking at: a model, its ID dataset and the OOD datasets to compare against."""

    model: str = "demo"
    id_dataset: str = "digits"
    ood_datasets: tuple[str, ...] = DEMO_OOD

    def sets(self) -> list[tuple[str, str | None]]:
        """Every (dataset, split) the workspace reads: ID test, ID train and its jigsaw version when the ID set has a
        train split, then each OOD set."""
        sets: list[tuple[str, str | None]] = [(self.id_dataset, "test")]
        spec = catalog.get_dataset(self.id_dataset)
        if "train" in spec.splits:
            sets.append((self.id_dataset, "train"))
        if "train" in spec.splits and spec.has_images:
            sets.append((jigsaw_name(self.id_dataset, JIGSAW_DEFAULT_N), "train"))
        for name in self.ood_datasets:
            if name == self.id_dataset:
                raise OODLabError(
                    f"'{name}' is the ID dataset; it cannot also be an OOD set"
                )
            catalog.get_dataset(name)
        return sets + [(name, None) for name in self.ood_datasets]


_states: BoundedMemo[Any] = BoundedMemo(64)
_prepared: BoundedMemo[dict] = BoundedMemo(64)
_scores: BoundedMemo[np.ndarray] = BoundedMemo(1024)


@dataclass
class LoadedWorkspace:
    """Cached features of a workspace: ID test, ID train (fits), its jigsaw version (block selection), OOD sets.

    ``cache`` is where fitted states and prepared arrays are stored (``None``: memory only, e.g. synthetic tests);
    ``benchmark`` picks the papers' defaults (``cifar10``, ``cifar100``, ``imagenet``; ``None``: OOD Lab's).
    """

    id_test: FeatureSet
    id_train: FeatureSet | None
    ood: dict[str, FeatureSet]
    jigsaw: FeatureSet | None = None
    cache: FeatureCache | None = None
    benchmark: str | None = None
    model: str | None = None
    id_dataset: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> list[str]:
        return self.id_test.blocks

    @property
    def accuracy(self) -> float:
        """ID top-1 accuracy (%) on the ID test set (NaN without labels)."""
        return id_accuracy(self.id_test.logits, self.id_test.labels)

    # --- block selection ----------------------------------------------------------------------------------------

    def normratio(self, jigsaw: FeatureSet | None = None) -> pd.Series:
        """NormRatio per block from ID train and its jigsaw version (default: the workspace's n = 3 set)."""
        jigsaw = jigsaw or self.jigsaw
        if self.id_train is None or jigsaw is None:
            raise OODLabError(
                "block selection needs the ID train split and its jigsaw version; extract them on Setup"
            )
        train_rows, jigsaw_rows = _matched_rows(self.id_train, jigsaw)
        return norm_ratio(self.id_train, jigsaw, train_rows, jigsaw_rows, self.blocks)

    @property
    def selected_block(self) -> str:
        """The NormRatio-selected block (argmax over the probed blocks)."""
        return select_block(self.normratio())

    @property
    def train_data(self) -> _TrainView:
        """The ID train set as a method's fit sees it (arrays, images, other sets of the model)."""
        if self.id_train is None:
            raise OODLabError("this ID dataset has no train split")
        return _TrainView(self.id_train, self)

    # --- parameters, states, scores ---------------------------------------------------------------------------

    def unavailable(
        self, method: Method, params: Mapping[str, object] | None = None
    ) -> str | None:
        """Why ``method`` cannot score this workspace (``None`` if it can): a missing jigsaw set for the NormRatio
        block, a missing ID train split for a fit, no images for re-inference or training."""
        values = {**method.defaults(self.benchmark), **(params or {})}
        if SELECTED_BLOCK in values.values() and (
            self.jigsaw is None or self.id_train is None
        ):
            return "its block is the NormRatio choice, which needs the ID train split and its jigsaw version"
        fits = [part for part, _ in method.parts] if method.composite else [method]
        if any(m.fit is not None for m in fits) and self.id_train is None:
            return "it is fitted on the ID train split, which this ID dataset does not have"
        if method.cost != "cache" and self.id_test.meta.get("synthetic"):
            return "it needs images, and a synthetic workspace has none"
        return None

    def resolved(
        self, method: Method, params: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        """Paper defaults for this benchmark overridden by ``params``, checked; ``selected`` → the NormRatio block."""
        values = {**method.defaults(self.benchmark), **(params or {})}
        if SELECTED_BLOCK in values.values():
            values = {
                k: self.selected_block if v == SELECTED_BLOCK else v
                for k, v in values.items()
            }
        return method.resolve(self.blocks, values)

    def state(
        self,
        method: Method,
        params: Mapping[str, object] | None = None,
        *,
        fit: bool = True,
        progress=None,
    ) -> Any:
        """The method's fitted state (``None`` without a fit). With ``fit=False``, ``None`` unless already fitted
        (in memory or in the cache); ``progress`` is passed to fits that train."""
        resolved = self.resolved(method, params)
        if method.composite:
            return tuple(
                self.state(part, values, fit=fit, progress=progress)
                for (part, _), values in zip(
                    method.parts, part_params(method, resolved)
                )
            )
        if method.fit is None:
            return None
        if self.id_train is None:
            raise OODLabError(
                f"{method.label} needs the ID train split; this ID dataset has none"
            )
        return self._fitted(
            method.fit, {k: resolved[k] for k in method.fit.params}, fit, progress
        )

    def _fitted(self, spec: Fit, fit_params: dict, fit: bool, progress) -> Any:
        memo_key = (
            spec.name,
            spec.version,
            self.id_train.fingerprint,
            digest(fit_params),
        )

        # The cache key only when the memo misses: hashing it costs ~40 µs a score.
        def cache_key() -> CacheKey | None:
            return self._derived_key(
                self.id_train,
                f"fit-{spec.name}",
                {"version": spec.version, "params": fit_params},
            )

        if not fit:
            found = _states.peek(memo_key)
            if found is None:
                found = self._load_state(spec, cache_key())
                if found is not None:
                    _states.put(memo_key, _keyed(found, memo_key))
            return found

        def compute() -> Any:
            key = cache_key()
            state = self._load_state(spec, key)
            if state is None:
                kwargs = dict(fit_params)
                if progress is not None and "progress" in spec.fn.__code__.co_varnames:
                    kwargs["progress"] = progress
                state = spec.fn(self.train_data, **kwargs)
                if spec.store and key is not None:
                    self._store(key, *_state_arrays(state))
            return _keyed(state, memo_key)

        return _states.get(memo_key, compute)

    def _derived_key(
        self, features: FeatureSet, variant: str, detail: dict
    ) -> CacheKey | None:
        if (
            self.cache is None
            or features.root is None
            or "dataset" not in features.meta
        ):
            return None
        dataset = features.meta["dataset"]
        return CacheKey.create(
            features.meta["model"],
            {
                "dataset": dataset["dataset"],
                "split": dataset["split"],
                "variant": variant,
                "of": features.fingerprint,
                **detail,
            },
        )

    def _load_state(self, spec: Fit, key: CacheKey | None) -> Any:
        if key is None or not spec.store:
            return None
        try:
            entry = self.cache.load(key)
        except CorruptEntry:
            return None
        if entry is None:
            return None
        state = _state_from(spec.state, entry)
        if (
            state is None
        ):  # stored by an older fit whose state had other fields: refit and replace it
            self.cache.delete(entry.root)
        return state

    def _store(
        self, key: CacheKey, arrays: dict[str, np.ndarray], meta: dict
    ) -> FeatureSet:
        def build(writer):
            for name, array in arrays.items():
                writer.put(name, array)
            return {"kind": "derived", "state": meta}

        return self.cache.get_or_create(key, build)

    def prepared(
        self,
        spec: Prepare,
        features: FeatureSet,
        state: Any,
        params: Mapping[str, object] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """A preparation step's arrays for ``features`` (computed once per set, state and ``params``; stored in the
        cache when ``spec.store``); ``arrays`` are what the step reads (``features`` with earlier steps' arrays)."""
        values = {k: (params or {})[k] for k in spec.params}
        if not spec.reads_state:
            state = None
        state_key = _state_key(state)
        memo_key = (
            spec.name,
            spec.version,
            features.fingerprint,
            state_key,
            digest(values),
        )
        source = features if arrays is None else arrays

        def compute() -> dict[str, np.ndarray]:
            key = (
                self._derived_key(
                    features,
                    f"prep-{spec.name}",
                    {"version": spec.version, "state": state_key, "params": values},
                )
                if spec.store
                else None
            )
            if key is None:
                return spec.fn(source, state, **values)
            try:
                entry = self.cache.load(key)
            except CorruptEntry:
                entry = None
            if (
                entry is None
            ):  # compute, store, and read back memory-mapped (file pages, shared by processes)
                entry = self._store(key, spec.fn(source, state, **values), {})
            return {name: entry[name] for name in entry.names}

        return _prepared.get(memo_key, compute)

    def score_set(
        self,
        method: Method,
        features: FeatureSet,
        params: Mapping[str, object] | None = None,
        progress=None,
    ) -> np.ndarray:
        """One method's scores of any feature set of this model (memoised per set, state and parameters)."""
        resolved = self.resolved(method, params)
        if method.composite:
            parts = [
                self.score_set(part, features, values, progress)
                for (part, _), values in zip(
                    method.parts, part_params(method, resolved)
                )
            ]
            return method.score_fn(*parts, **own_params(method, resolved))
        state = self.state(
            method, resolved, fit=method.cost != "training", progress=progress
        )
        if method.fit is not None and state is None:
            raise OODLabError(
                f"{method.label} is not fitted yet: train it first (it is not fitted automatically)"
            )
        key = (method.name, features.fingerprint, _state_key(state), digest(resolved))
        return _scores.get(
            key, lambda: self._compute(method, features, state, resolved, progress)
        )

    def _compute(
        self, method: Method, features: FeatureSet, state: Any, params: dict, progress
    ) -> np.ndarray:
        arrays: Mapping[str, np.ndarray] = features
        for step in method.prepares:
            arrays = Overlay(
                arrays, self.prepared(step, features, state, params, arrays)
            )
        if method.cost == "reinference":
            odin = odin_feature_set(
                features, params["T"], params["eps"], self.cache, progress
            )
            arrays = Overlay(features, {"odin": odin["odin"]})
        scores = np.asarray(method.score_fn(arrays, state, **params))
        if not np.isfinite(scores).all():
            name = features.meta.get("dataset", {}).get("dataset", "a set")
            raise OODLabError(
                f"{method.label} gives non-finite scores on {name} "
                f"({int((~np.isfinite(scores)).sum())} of {len(scores)}): check the model's features or parameters"
            )
        return scores

    def scores(
        self, method: Method, params: Mapping[str, object] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """ID test and per-OOD-set scores of one method."""
        return self.score_set(method, self.id_test, params), {
            name: self.score_set(method, f, params) for name, f in self.ood.items()
        }

    def with_sets(self, ood: dict[str, FeatureSet]) -> LoadedWorkspace:
        """The same workspace scored against other OOD sets (e.g. validation pseudo-OOD)."""
        return dataclasses.replace(self, ood=ood)


class _TrainView:
    """The ID train set as a fit sees it (``scores.method.TrainData``)."""

    def __init__(self, features: FeatureSet, workspace: LoadedWorkspace):
        self.features, self.workspace = features, workspace

    def __getitem__(self, name: str) -> np.ndarray:
        return self.features[name]

    def __contains__(self, name: object) -> bool:
        return name in self.features

    @property
    def blocks(self) -> list[str]:
        return self.features.blocks

    def pixels(self, rows: np.ndarray):
        return pixels(self.features, rows)

    def other(self, dataset: str) -> _TrainView:
        ws = self.workspace
        ref = f"{ws.id_dataset}{dataset}" if dataset.startswith("@") else dataset
        if (
            ref == jigsaw_name(ws.id_dataset or "", JIGSAW_DEFAULT_N)
            and ws.jigsaw is not None
        ):
            return _TrainView(ws.jigsaw, ws)
        if ws.model is None:
            raise OODLabError(
                f"cannot load '{ref}' for a workspace without a registered model"
            )
        return _TrainView(feature_set(ws.model, ref, cache=ws.cache), ws)


def _matched_rows(
    train: FeatureSet, jigsaw: FeatureSet
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``train`` and ``jigsaw`` that show the same image (both readable when extracted)."""
    train_index = np.asarray(train["index"])
    order = np.argsort(train_index)
    originals = jigsaw_base_rows(jigsaw.meta["dataset"])[np.asarray(jigsaw["index"])]
    slot = np.minimum(
        np.searchsorted(train_index, originals, sorter=order), len(order) - 1
    )
    keep = train_index[order[slot]] == originals
    return order[slot[keep]], np.flatnonzero(keep)


def _keyed(state: Any, memo_key: tuple) -> Any:
    """Tag a fitted state with the identity of its fit (method fit, train entry, fit parameters)."""
    object.__setattr__(state, "_ood_lab_key", digest(list(memo_key))[:16])
    return state


def _state_key(state: Any) -> str:
    """A short identity of a fitted state, for memo and cache keys."""
    if state is None:
        return "-"
    if isinstance(state, tuple):
        return "|".join(_state_key(s) for s in state)
    return getattr(state, "_ood_lab_key", None) or str(id(state))


def _state_arrays(state: Any) -> tuple[dict[str, np.ndarray], dict]:
    """A state dataclass as arrays (ndarray fields, and dicts of them) plus JSON metadata (every other field)."""
    arrays, meta = {}, {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, np.ndarray) for v in value.values())
        ):
            arrays.update({f"{f.name}/{k}": v for k, v in value.items()})
            meta[f"{f.name}:keys"] = list(value)
        else:
            meta[f.name] = value
    return arrays, meta


def _state_from(cls: type, entry: FeatureSet) -> Any:
    """The state dataclass stored in ``entry``, or ``None`` if the entry does not hold every field."""
    meta = entry.meta.get("state", {})
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in entry:
            values[f.name] = np.asarray(entry[f.name])
        elif f"{f.name}:keys" in meta:
            keys = meta[f"{f.name}:keys"]
            if not all(f"{f.name}/{k}" in entry for k in keys):
                return None
            values[f.name] = {k: np.asarray(entry[f"{f.name}/{k}"]) for k in keys}
        elif f.name in meta:
            values[f.name] = meta[f.name]
        else:
            return None
    return cls(**values)


def _check_labels(workspace: Workspace, features: FeatureSet | None) -> None:
    """Refuse ID labels the model cannot predict (a list whose labels run past the model's classes)."""
    if features is None or not len(features):
        return
    labels = np.asarray(features.labels)
    classes = features.logits.shape[1]
    low, high = int(labels.min()), int(labels.max())
    if high >= classes or low < 0:
        split = features.meta.get("dataset", {}).get("split", "")
        raise OODLabError(
            f"ID dataset '{workspace.id_dataset}' ({split}) has class labels from {low} to {high}, but model "
            f"'{workspace.model}' predicts {classes} classes (0 to {classes - 1}); fix the labels or pick the "
            "model trained on this dataset"
        )


def _assemble(
    workspace: Workspace, load: Callable[[str, str | None], FeatureSet | None], cache
) -> dict:
    loaded = {(name, split): load(name, split) for name, split in workspace.sets()}
    for split in ("test", "train"):
        _check_labels(workspace, loaded.get((workspace.id_dataset, split)))
    jigsaw = jigsaw_name(workspace.id_dataset, JIGSAW_DEFAULT_N)
    spec = catalog.get_model(workspace.model)
    return {
        "id_test": loaded[workspace.id_dataset, "test"],
        "id_train": loaded.get((workspace.id_dataset, "train")),
        "ood": {name: loaded[name, None] for name in workspace.ood_datasets},
        "jigsaw": loaded.get((jigsaw, "train")),
        "cache": cache,
        "benchmark": spec.benchmark,
        "model": workspace.model,
        "id_dataset": workspace.id_dataset,
    }


def load_workspace(
    workspace: Workspace,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> LoadedWorkspace:
    """Extract (if missing) and load every set of the workspace; ``progress(set, done, total)``."""
    cache = cache or FeatureCache()

    def load(name: str, split: str | None) -> FeatureSet:
        label = f"{name}:{split}" if split else name
        report = (
            (lambda done, total: progress(label, done, total)) if progress else None
        )
        return feature_set(workspace.model, name, split, cache=cache, progress=report)

    return LoadedWorkspace(**_assemble(workspace, load, cache))


def cached_workspace(
    workspace: Workspace, cache: FeatureCache | None = None
) -> LoadedWorkspace | None:
    """The workspace's features if every set is already cached (never extracts); ``None`` otherwise."""
    cache = cache or FeatureCache()
    parts = _assemble(
        workspace,
        lambda name, split: cached_feature_set(workspace.model, name, split, cache),
        cache,
    )
    if parts["id_test"] is None or any(f is None for f in parts["ood"].values()):
        return None
    return LoadedWorkspace(**parts)
