"""Paired comparisons of detectors on one workspace: is A's metric really above B's, on these samples?

Both methods score the same ID and OOD samples, so their difference is tested paired: DeLong's test for AUROC
(``metrics.paired_auroc``: exact components, no resampling) and a paired stratified bootstrap for FPR95 and AUPR
(``metrics.paired_bootstrap``). Results are memoised per score vectors, so pages that redraw ask again for free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .memo import BoundedMemo
from .metrics import (
    Difference,
    Scored,
    auroc_mean_interval,
    content_key,
    paired_auroc,
    paired_auroc_per_set,
    paired_bootstrap,
)
from .scores.method import Method
from .workspace import LoadedWorkspace

Setting = tuple[Method, Mapping[str, object]]
_differences: BoundedMemo[Difference] = BoundedMemo(1024)


def scored(features: LoadedWorkspace, setting: Setting) -> Scored:
    """ID test and per-OOD-set scores of one method setting."""
    method, params = setting
    return features.scores(method, params)


def difference(
    a: Scored, b: Scored, metric: str = "AUROC", sets: Sequence[str] | None = None
) -> Difference:
    """``metric(a) − metric(b)`` (mean over ``sets``, default every set of ``a``) with its 95 % interval and
    p-value, paired on the samples both were scored on."""
    sets = tuple(sets or a[1])
    key = (metric, sets, _identity(a, sets), _identity(b, sets))

    def compute() -> Difference:
        if metric == "AUROC":
            return paired_auroc(a, b, sets)
        return paired_bootstrap(a, b, metric, sets)

    return _differences.get(key, compute)


def setting_difference(
    features: LoadedWorkspace,
    a: Setting,
    b: Setting,
    metric: str = "AUROC",
    sets: Sequence[str] | None = None,
) -> Difference:
    """``difference`` of two method settings on one workspace."""
    return difference(scored(features, a), scored(features, b), metric, sets)


def mean_interval(
    features: LoadedWorkspace, setting: Setting
) -> tuple[float, float, float]:
    """A setting's mean AUROC over the OOD sets with DeLong's 95 % interval: ``(mean, low, high)``."""
    return auroc_mean_interval(scored(features, setting))


def _identity(scores: Scored, sets: Sequence[str]) -> tuple:
    """What the scores are, for the memo: the digests of their values."""
    id_scores, per_set = scores
    return tuple(content_key(a) for a in [id_scores, *(per_set[s] for s in sets)])


_per_set: BoundedMemo[dict[str, Difference]] = BoundedMemo(256)


def per_set_differences(
    features: LoadedWorkspace, a: Setting, b: Setting
) -> dict[str, Difference]:
    """AUROC(a) − AUROC(b) per OOD set and for their ``mean`` (paired DeLong, one pass over the components), for
    metric cards' deltas; memoised per score vectors."""
    first, second = scored(features, a), scored(features, b)
    sets = tuple(first[1])
    key = (sets, _identity(first, sets), _identity(second, sets))
    return _per_set.get(key, lambda: paired_auroc_per_set(first, second))


def value_gap(
    features: LoadedWorkspace,
    method: Method,
    name: str,
    a: object,
    b: object,
    params: Mapping[str, object] | None = None,
) -> Difference:
    """Mean AUROC of ``method`` with parameter ``name`` = ``a`` minus with ``name`` = ``b`` (paired)."""
    base = dict(params or {})
    return setting_difference(
        features, (method, {**base, name: a}), (method, {**base, name: b})
    )


def depth_gap(
    features: LoadedWorkspace,
    method: Method,
    means: Mapping[str, float],
    blocks: Sequence[str],
    params: Mapping[str, object] | None = None,
) -> Difference | None:
    """The NAP depth claim's difference: the best block (by mean AUROC) minus the last block, or, when the last
    is best, the last minus the runner-up."""
    if len(blocks) < 2:
        return None
    ranked = sorted(blocks, key=lambda b: means[b], reverse=True)
    best, last = ranked[0], blocks[-1]
    other = ranked[1] if best == last else last
    return value_gap(features, method, "block", best, other, params)


def lead(
    features: LoadedWorkspace, settings: Sequence[Setting], means: Sequence[float]
) -> Difference | None:
    """The best setting's mean AUROC minus the runner-up's (paired), by ``means``."""
    if len(settings) < 2:
        return None
    order = np.argsort(means)[::-1]
    return setting_difference(features, settings[order[0]], settings[order[1]])


@dataclass(frozen=True)
class Leader:
    """A table column's best method, its runner-up, and whether the lead is real (paired test)."""

    best: str
    runner: str
    lead: Difference

    @property
    def tied(self) -> bool:
        return not self.lead.significant


def column_leaders(
    features: LoadedWorkspace,
    table: pd.DataFrame,
    settings: Sequence[Setting],
    metric: str = "AUROC",
) -> dict[str, Leader]:
    """Per column of a metrics table (each OOD set and ``mean``): the best and second-best method by ``metric``
    (higher AUROC / AUPR, lower FPR95) and the paired test of their gap."""
    labels = {method.label: (method, params) for method, params in settings}
    lower_is_better = metric.startswith("FPR95")
    out = {}
    for column, rows in table[table.method.isin(labels)].groupby("ood_set", sort=False):
        ranked = rows.sort_values(metric, ascending=lower_is_better)
        if len(ranked) < 2:
            continue
        best, runner = ranked.method.iloc[0], ranked.method.iloc[1]
        sets = None if column == "mean" else [column]
        first, second = scored(features, labels[best]), scored(features, labels[runner])
        gap = difference(first, second, metric, sets)
        if lower_is_better:
            gap = Difference(-gap.delta, -gap.high, -gap.low, gap.p)
        out[column] = Leader(best, runner, gap)
    return out
