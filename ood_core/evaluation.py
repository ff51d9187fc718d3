"""Score a workspace's ID test set and OOD sets with registered methods and tabulate the metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .block_selection import (
    JIGSAW_DEFAULT_N,
    jigsaw_base_rows,
    jigsaw_name,
    norm_ratio,
    select_block,
)
from .cache import FeatureCache, FeatureSet
from .errors import OODLabError
from .heatmap import TrainedDecoder, heatmap_score
from .metrics import id_accuracy, metrics_table
from .pipeline import Workspace, cached_feature_set, feature_set
from .scores.registry import SELECTED_BLOCK, Method
from .train_stats import TrainStats, train_stats

Progress = Callable[[str, int, int], None]


@dataclass
class WorkspaceFeatures:
    """Cached features of a workspace: ID test, ID train (train statistics), the jigsaw version of ID train
    (block selection) and each OOD set."""

    id_test: FeatureSet
    id_train: FeatureSet | None
    ood: dict[str, FeatureSet]
    jigsaw: FeatureSet | None = None

    @property
    def train(self) -> TrainStats | None:
        return train_stats(self.id_train) if self.id_train is not None else None

    def normratio(self, jigsaw: FeatureSet | None = None) -> pd.Series:
        """NormRatio per block from ID train and its jigsaw version (default: the workspace's n = 3 set)."""
        jigsaw = jigsaw or self.jigsaw
        if self.id_train is None or jigsaw is None:
            raise OODLabError(
                "block selection needs the ID train split and its jigsaw version; extract them on Setup"
            )
        return norm_ratio(self.id_train, jigsaw, jigsaw_base_rows(jigsaw))

    @property
    def selected_block(self) -> str:
        """The NormRatio-selected block (argmax over the probed blocks)."""
        return select_block(self.normratio())

    def score_set(
        self, method: Method, features: FeatureSet, params: dict | None = None
    ) -> np.ndarray:
        """One method's scores of any feature set of this model (``block="selected"`` → the NormRatio choice)."""
        train = self.train if method.needs_train else None
        params = {**method.defaults(), **(params or {})}
        if SELECTED_BLOCK in params.values():
            params = {
                k: self.selected_block if v == SELECTED_BLOCK else v
                for k, v in params.items()
            }
        return method.score(features, train, **params)

    def scores(
        self, method: Method, params: dict | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """ID test and per-OOD-set scores of one method."""
        return self.score_set(method, self.id_test, params), {
            name: self.score_set(method, f, params) for name, f in self.ood.items()
        }


def workspace_features(
    workspace: Workspace,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> WorkspaceFeatures:
    """Extract (if missing) and load every set of the workspace; ``progress(set, done, total)``."""

    def report(name: str):
        return (lambda done, total: progress(name, done, total)) if progress else None

    def load(name: str, split: str | None) -> FeatureSet:
        label = f"{name}:{split}" if split else name
        return feature_set(
            workspace.model, name, split, cache=cache, progress=report(label)
        )

    return _assemble(workspace, load)


def cached_workspace_features(
    workspace: Workspace, cache: FeatureCache | None = None
) -> WorkspaceFeatures | None:
    """The workspace's features if every set is already cached (never extracts); ``None`` otherwise."""
    features = _assemble(
        workspace,
        lambda name, split: cached_feature_set(workspace.model, name, split, cache),
    )
    if features.id_test is None or any(f is None for f in features.ood.values()):
        return None
    return features


def workspace_sets(workspace: Workspace) -> list[tuple[str, str | None]]:
    """Every (dataset, split) a workspace reads: ID test, ID train and its jigsaw version if the ID set has a
    train split, then each OOD set."""
    sets: list[tuple[str, str | None]] = [(workspace.id_dataset, "test")]
    if "train" in _splits(workspace.id_dataset):
        sets += [
            (workspace.id_dataset, "train"),
            (jigsaw_name(workspace.id_dataset, JIGSAW_DEFAULT_N), "train"),
        ]
    return sets + [(name, None) for name in workspace.ood_datasets]


def _assemble(workspace: Workspace, load) -> WorkspaceFeatures:
    loaded = {
        (name, split): load(name, split) for name, split in workspace_sets(workspace)
    }
    jigsaw = jigsaw_name(workspace.id_dataset, JIGSAW_DEFAULT_N)
    return WorkspaceFeatures(
        id_test=loaded[workspace.id_dataset, "test"],
        id_train=loaded.get((workspace.id_dataset, "train")),
        ood={name: loaded[name, None] for name in workspace.ood_datasets},
        jigsaw=loaded.get((jigsaw, "train")),
    )


def _splits(dataset: str) -> tuple[str, ...]:
    from . import catalog

    return catalog.get_dataset(dataset).splits


def method_label(method: Method, params: dict) -> str:
    return method.label + "".join(f" {k}={v}" for k, v in params.items())


def evaluate(
    features: WorkspaceFeatures, methods: Sequence[tuple[Method, dict]]
) -> pd.DataFrame:
    """Metrics table (%, one row per method × OOD set plus a per-method mean) for ``(method, params)`` pairs."""
    return metrics_table(
        {method_label(m, p): features.scores(m, p) for m, p in methods}
    )


def accuracy(id_features: FeatureSet) -> float:
    """ID top-1 accuracy (%) of the model on the cached ID test set."""
    return id_accuracy(id_features.logits, id_features.labels)


def heatmap_scores(
    features: WorkspaceFeatures, decoder: TrainedDecoder, exclude: str | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Heatmap-based OOD scores of ID test and each OOD set but ``exclude`` (the outlier-exposure set)."""
    return heatmap_score(
        decoder, features.id_test.penultimate, features.id_test.logits
    ), {
        name: heatmap_score(decoder, f.penultimate, f.logits)
        for name, f in features.ood.items()
        if name != exclude
    }


def before_after(
    before: WorkspaceFeatures, after: WorkspaceFeatures, methods: Sequence[Method]
) -> pd.DataFrame:
    """Metrics (%) of each method with default parameters on two workspaces, methods labelled ``· before/after``."""
    return metrics_table(
        {
            f"{method.label} · {label}": features.scores(method)
            for label, features in (("before", before), ("after", after))
            for method in methods
        }
    )
