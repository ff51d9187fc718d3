"""Score a workspace's ID test set and OOD sets with registered methods and tabulate the metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cache import FeatureCache, FeatureSet
from .metrics import id_accuracy, metrics_table
from .pipeline import Workspace, cached_feature_set, feature_set
from .scores.registry import Method
from .train_stats import TrainStats, train_stats

Progress = Callable[[str, int, int], None]


@dataclass
class WorkspaceFeatures:
    """Cached features of a workspace: ID test, ID train (for train statistics) and each OOD set."""

    id_test: FeatureSet
    id_train: FeatureSet | None
    ood: dict[str, FeatureSet]

    @property
    def train(self) -> TrainStats | None:
        return train_stats(self.id_train) if self.id_train is not None else None

    def scores(
        self, method: Method, params: dict | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """ID test scores and per-OOD-set scores of one method."""
        train = self.train if method.needs_train else None
        params = params or {}
        return method.score(self.id_test, train, **params), {
            name: method.score(f, train, **params) for name, f in self.ood.items()
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

    id_test = load(workspace.id_dataset, "test")
    id_train = (
        load(workspace.id_dataset, "train")
        if "train" in _splits(workspace.id_dataset)
        else None
    )
    return WorkspaceFeatures(
        id_test, id_train, {name: load(name, None) for name in workspace.ood_datasets}
    )


def cached_workspace_features(
    workspace: Workspace, cache: FeatureCache | None = None
) -> WorkspaceFeatures | None:
    """The workspace's features if every set is already cached (never extracts); ``None`` otherwise."""
    id_test = cached_feature_set(workspace.model, workspace.id_dataset, "test", cache)
    id_train = (
        cached_feature_set(workspace.model, workspace.id_dataset, "train", cache)
        if "train" in _splits(workspace.id_dataset)
        else None
    )
    ood = {
        name: cached_feature_set(workspace.model, name, None, cache)
        for name in workspace.ood_datasets
    }
    if id_test is None or any(f is None for f in ood.values()):
        return None
    return WorkspaceFeatures(id_test, id_train, ood)


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
