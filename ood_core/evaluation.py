"""Score a workspace's ID test set and OOD sets with registered methods and tabulate the metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from .cache import FeatureCache, FeatureSet
from .metrics import id_accuracy, metrics_table
from .pipeline import Workspace, feature_set
from .scores.registry import Method

Progress = Callable[[str, int, int], None]


def workspace_features(
    workspace: Workspace,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> tuple[FeatureSet, dict[str, FeatureSet]]:
    """The ID test FeatureSet and one FeatureSet per OOD set (extracted if missing); ``progress(set, done, total)``."""

    def report(name: str):
        return (lambda done, total: progress(name, done, total)) if progress else None

    id_features = feature_set(
        workspace.model,
        workspace.id_dataset,
        "test",
        cache=cache,
        progress=report(workspace.id_dataset),
    )
    ood = {
        name: feature_set(workspace.model, name, cache=cache, progress=report(name))
        for name in workspace.ood_datasets
    }
    return id_features, ood


def evaluate(
    id_features: FeatureSet,
    ood_features: dict[str, FeatureSet],
    methods: Sequence[tuple[Method, dict]],
) -> pd.DataFrame:
    """Metrics table (%, one row per method × OOD set plus a per-method mean) for ``(method, params)`` pairs."""
    results = {}
    for method, params in methods:
        label = method.label + "".join(f" {k}={v}" for k, v in params.items())
        results[label] = (
            method.score(id_features, **params),
            {
                name: method.score(features, **params)
                for name, features in ood_features.items()
            },
        )
    return metrics_table(results)


def accuracy(id_features: FeatureSet) -> float:
    """ID top-1 accuracy (%) of the model on the cached ID test set."""
    return id_accuracy(id_features.logits, id_features.labels)
