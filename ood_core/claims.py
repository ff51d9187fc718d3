"""Each page's claims about a paper, assembled from a workspace: the numbers, the paired tests behind them and the
``observations`` sentences. Pages and the guided lecture (which previews a step's claims) call the same function."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from . import comparisons, tables
from . import observations as notes
from .observations import Observation
from .scores.method import Method
from .scores.registry import get_method
from .workspace import LoadedWorkspace


def nap_depth(
    features: LoadedWorkspace, context: str, sweep: pd.DataFrame | None = None
) -> Observation:
    """NAP: the last block is the best place to read the prior (tested against the runner-up or the best)."""
    sweep = tables.block_sweep(features) if sweep is None else sweep
    blocks = features.blocks
    means = notes.mean_by(sweep, "block").to_dict()
    gap = comparisons.depth_gap(features, get_method("nap"), means, blocks)
    return notes.nap_depth(sweep, blocks, context, gap)


def combination(
    features: LoadedWorkspace, method: Method, params: Mapping[str, object]
) -> Observation:
    """NAP-X beats both of its parts (λ = 1: the base alone; λ = 0: NAP alone)."""
    as_base, as_nap = {**params, "lambda": 1.0}, {**params, "lambda": 0.0}

    def mean(p: Mapping[str, object]) -> float:
        table = tables.all_methods_table(features, [(method, p)])
        return float(notes.mean_by(table, "method").iloc[0])

    return notes.combination(
        method.label,
        float(params["lambda"]),
        mean(params),
        method.parts[0][0].label,
        mean(as_base),
        mean(as_nap),
        comparisons.setting_difference(features, (method, params), (method, as_base)),
        comparisons.setting_difference(features, (method, params), (method, as_nap)),
    )


def block_selection(
    features: LoadedWorkspace,
    ratios: pd.Series,
    context: str,
    table: pd.DataFrame | None = None,
    rho: float | None = None,
) -> list[Observation]:
    """Block Selection: NormRatio's choice is the best block, and FeatureNorm is larger for ID there."""
    if table is None or rho is None:
        table, rho = tables.block_selection_table(features, ratios)
    chosen = str(ratios.idxmax())
    per_block = notes.mean_auroc_per_block(table)
    best = str(per_block.idxmax())
    feature_norm = get_method("featurenorm")
    gap = (
        comparisons.value_gap(features, feature_norm, "block", best, chosen)
        if best != chosen
        else None
    )
    _, low, high = comparisons.mean_interval(
        features, (feature_norm, {"block": chosen})
    )
    return notes.block_selection(
        chosen, best, rho, float(per_block[chosen]), context, gap, (low, high)
    )


def line_vs_energy(
    features: LoadedWorkspace, params: Mapping[str, object], context: str
) -> list[Observation]:
    """LINe improves on Energy, and ID samples keep their evidence."""
    line, energy = get_method("line"), get_method("energy")

    def per_set(method: Method, p: Mapping[str, object]) -> dict[str, float]:
        table = tables.all_methods_table(features, [(method, p)])
        return table.set_index("ood_set")["AUROC"].to_dict()

    differences = comparisons.per_set_differences(
        features, (line, params), (energy, {})
    )
    set_gaps = {name: d for name, d in differences.items() if name != "mean"}
    return notes.line_vs_energy(
        per_set(line, params),
        per_set(energy, {}),
        tables.line_evidence(features, params),
        context,
        differences.get("mean", next(iter(set_gaps.values()))),
        set_gaps,
    )


def best_methods(
    features: LoadedWorkspace,
    table: pd.DataFrame,
    settings: list[tuple[Method, Mapping[str, object]]],
) -> list[Observation]:
    """The Compare table's best method, and whether it is clearly ahead of the runner-up."""
    means = notes.mean_by(table, "method")
    labels = [m.label for m, _ in settings]
    present = [
        (s, float(means[label])) for s, label in zip(settings, labels) if label in means
    ]
    lead = comparisons.lead(features, [s for s, _ in present], [v for _, v in present])
    return notes.best_methods(table, lead)
