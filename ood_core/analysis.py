"""Tables behind the pages: sweeps, curves, binned histograms and extremes, all from cached arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_curve

from .evaluation import WorkspaceFeatures
from .metrics import METRICS, metrics_table
from .scores.registry import Method, get_method


def parameter_sweep(
    features: WorkspaceFeatures,
    method: Method,
    params: dict,
    name: str,
    values: Sequence,
) -> pd.DataFrame:
    """Metrics of ``method`` for each value of parameter ``name`` (others fixed): columns value, ood_set, metrics."""
    frames = []
    for value in values:
        table = metrics_table(
            {method.label: features.scores(method, {**params, name: value})}
        )
        frames.append(table.assign(value=value))
    return pd.concat(frames, ignore_index=True)[["value", "ood_set", *METRICS]]


def block_sweep(
    features: WorkspaceFeatures, method_name: str = "nap", params: dict | None = None
) -> pd.DataFrame:
    """Metrics of a block-parameterised method on every probed block (the NAP paper's Fig. 5 question)."""
    method = get_method(method_name)
    sweep = parameter_sweep(
        features, method, params or {}, "block", features.id_test.blocks
    )
    return sweep.rename(columns={"value": "block"})


def all_methods_table(
    features: WorkspaceFeatures, methods: Sequence[tuple[Method, dict]]
) -> pd.DataFrame:
    """The Compare table: one row per (method, OOD set) plus per-method means, metrics in %; rows are named by
    the methods' labels (each method appears once)."""
    return metrics_table({m.label: features.scores(m, p) for m, p in methods})


def binned(scores: Mapping[str, np.ndarray], bins: int = 60) -> pd.DataFrame:
    """Server-side histograms on shared bins: columns set, left, right, centre, density (area 1 per set)."""
    pooled = np.concatenate([np.asarray(s, np.float64) for s in scores.values()])
    edges = np.histogram_bin_edges(pooled[np.isfinite(pooled)], bins=bins)
    rows = []
    for name, values in scores.items():
        density, _ = np.histogram(values, bins=edges, density=True)
        rows.append(
            pd.DataFrame(
                {
                    "set": name,
                    "left": edges[:-1],
                    "right": edges[1:],
                    "centre": (edges[:-1] + edges[1:]) / 2,
                    "density": density,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> pd.DataFrame:
    """ROC curve (sklearn) with ID as the positive class: columns fpr, tpr."""
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[id_scores, ood_scores])
    return pd.DataFrame({"fpr": fpr, "tpr": tpr})


def prior_points(
    features: WorkspaceFeatures,
    block: str,
    channel: int | None = None,
    per_set: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """(mean, max) activation pairs of ``block``'s channels per sample, ID test vs each OOD set.

    ``channel=None`` pools every (sample, channel) pair and draws ``per_set`` of them per set (seeded) so the
    scatter stays readable; a channel index gives that channel's pair for every sample.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for name, f in {"ID": features.id_test, **features.ood}.items():
        means, maxes = (
            np.asarray(f.stat(block, "mean")),
            np.asarray(f.stat(block, "max")),
        )
        if channel is not None:
            mean, peak = means[:, channel], maxes[:, channel]
        else:
            pick = rng.choice(means.size, size=min(per_set, means.size), replace=False)
            mean, peak = means.ravel()[pick], maxes.ravel()[pick]
        frames.append(pd.DataFrame({"set": name, "mean": mean, "max": peak}))
    return pd.concat(frames, ignore_index=True)


def extremes(
    scores: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray], count: int = 8
) -> pd.DataFrame:
    """The ``count`` highest- and lowest-scoring samples over all sets: columns set, row, score, end."""
    pooled = pd.concat(
        [
            pd.DataFrame(
                {"set": name, "row": np.asarray(rows[name]), "score": np.asarray(s)}
            )
            for name, s in scores.items()
        ],
        ignore_index=True,
    ).sort_values("score", ascending=False, kind="stable")
    top = pooled.head(count).assign(end="most ID-like")
    bottom = pooled.tail(count).iloc[::-1].assign(end="most OOD-like")
    return pd.concat([top, bottom], ignore_index=True)


def block_selection_table(
    features: WorkspaceFeatures, ratios: pd.Series
) -> tuple[pd.DataFrame, float]:
    """NormRatio next to the true FeatureNorm AUROC of every block on every OOD set (and their mean), plus the
    Spearman rank correlation between NormRatio and the mean AUROC across blocks."""
    sweep = block_sweep(features, "featurenorm")
    auroc = sweep.pivot(index="block", columns="ood_set", values="AUROC").loc[
        list(ratios.index)
    ]
    table = pd.concat([ratios.rename("NormRatio"), auroc.add_prefix("AUROC ")], axis=1)
    mean = (
        table["AUROC mean"]
        if "AUROC mean" in table
        else table.filter(like="AUROC").mean(axis=1)
    )
    rho = (
        spearmanr(table["NormRatio"], mean).statistic
        if len(table) > 2
        else float("nan")
    )
    return table.rename_axis("block").reset_index(), float(rho)


def mean_auroc(features: WorkspaceFeatures, method: Method, params: dict) -> float:
    """AUROC (%) of one method setting averaged over the workspace's OOD sets."""
    table = metrics_table({method.label: features.scores(method, params)}, mean=False)
    return float(table["AUROC"].mean())


def line_sweep(
    features: WorkspaceFeatures, grid: Sequence[float], tau: float
) -> pd.DataFrame:
    """Mean AUROC (over OOD sets) of LINe for every (p_a, p_w) on ``grid`` at clip ``tau``."""
    method = get_method("line")
    return pd.DataFrame(
        [
            {
                "p_a": p_a,
                "p_w": p_w,
                "AUROC": mean_auroc(
                    features, method, {"p_a": p_a, "p_w": p_w, "tau": tau}
                ),
            }
            for p_a in grid
            for p_w in grid
        ]
    )


def line_pareto(
    features: WorkspaceFeatures, percentiles: Sequence[float], tau: float
) -> pd.DataFrame:
    """As pruning grows (p_a = p_w = p): ID accuracy of the pruned head vs mean AUROC (the NAP paper's trade-off)."""
    from .scores.line import importance, line_logits

    train = features.train
    phi = importance(train.weight, train.class_means)
    labels = np.asarray(features.id_test.labels)
    rows = []
    for p in percentiles:
        logits, _ = line_logits(
            features.id_test.penultimate, train.weight, train.bias, phi, p, p, tau
        )
        rows.append(
            {
                "p": p,
                "ID accuracy": 100 * float((logits.argmax(1) == labels).mean()),
                "AUROC": mean_auroc(
                    features, get_method("line"), {"p_a": p, "p_w": p, "tau": tau}
                ),
            }
        )
    return pd.DataFrame(rows)
