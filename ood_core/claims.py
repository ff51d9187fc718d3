"""Each page's claims about a paper, assembled from a workspace: the numbers, the paired tests behind them and the
``observations`` sentences. Pages and the guided lecture (which previews a step's claims) call the same function."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pandas as pd
from scipy.stats import norm

from . import comparisons, tables
from . import observations as notes
from .metrics import Z95
from .observations import Observation
from .scores.heatmap import HEATMAP
from .scores.heatmap import SEEDS as HEATMAP_SEEDS
from .scores.method import Method
from .scores.registry import get_method
from .training.background import BackgroundSettings
from .training.finetune import SEEDS
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


def reading_metrics(features: LoadedWorkspace) -> list[Observation]:
    """How to read AUROC and FPR95, on this workspace's own baseline (MSP): what each number says in words."""
    msp = get_method("msp")
    table = tables.all_methods_table(features, [(msp, {})])
    mean, low, high = comparisons.mean_interval(features, (msp, {}))
    fpr = float(notes.mean_by(table, "method", "FPR95").iloc[0])
    return [
        Observation(
            f"Here MSP, the baseline, has a mean AUROC of {mean:.1f} (95 % CI {low:.1f}–{high:.1f}): an OOD image "
            f"scores below an ID image in {mean:.0f} % of random pairs. Its FPR95 is {fpr:.1f} %: at the threshold "
            f"that keeps 95 % of ID images, {fpr:.0f} % of OOD images still pass as ID."
        )
    ]


def prior(features: LoadedWorkspace) -> list[Observation]:
    """NAP's prior separates ID from OOD on the last block, before pooling: its mean AUROC is above chance."""
    nap = get_method("nap")
    mean, low, high = comparisons.mean_interval(
        features, (nap, {"block": features.blocks[-1]})
    )
    se = (high - low) / (2 * Z95)
    p = float(norm.sf((mean - 50) / se)) if se > 0 else float(mean <= 50)
    text = (
        f"S_NAP on the last block ({features.blocks[-1]}) ranks ID above OOD with mean AUROC {mean:.1f} "
        f"(95 % CI {low:.1f}–{high:.1f})"
    )
    return notes.settle(
        [
            Observation(
                text + ": ID channels peak higher at the same mean, as the paper says.",
                mean > 50,
                "the prior is a property of well-trained, large networks; "
                + notes.SMALL_MODEL,
                p=p,
                unclear=text + ": not clearly above chance.",
            )
        ]
    )


def heatmap_decoder(features: LoadedWorkspace) -> list[Observation]:
    """The heatmap decoder's score (default settings, over its training seeds) next to Energy; or how to train it."""
    runs = [{"seed": seed} for seed in HEATMAP_SEEDS]
    if features.id_train is None or any(
        features.state(HEATMAP, run, fit=False) is None for run in runs
    ):
        return [
            Observation(
                f"The OOD decoder is not trained yet (Heatmaps page: {len(runs)} seeds). Until then the gallery "
                "shows Grad-CAM and NAP's peaks, ranked by Energy."
            )
        ]
    seeds = tables.seed_table(features, HEATMAP, runs)
    energy, _, _ = comparisons.mean_interval(features, (get_method("energy"), {}))
    return [
        Observation(
            f"The decoder's heatmap score reaches a mean AUROC of {seeds.loc['mean', 'mean']:.1f} ± "
            f"{seeds.loc['sd', 'mean']:.1f} (sd over {len(runs)} training seeds), against {energy:.1f} for Energy "
            "on the same sets."
        )
    ]


def background(
    features: LoadedWorkspace, settings: BackgroundSettings
) -> list[Observation]:
    """Local Background's claims for fine-tunes already trained with ``settings`` (and their α = 0 control), or
    what to train first."""
    afters = tables.background_runs(features, settings)
    if afters is None:
        return [
            Observation(
                f"Not fine-tuned yet with α = {settings.alpha:g} (Local Background page: {len(SEEDS)} seeds, "
                "≈ 15 s each on the demo)."
            )
        ]
    methods = [get_method(name) for name in ("energy", "nap", "featurenorm")]
    controls = tables.background_runs(features, replace(settings, alpha=0.0))
    return notes.background(
        settings.alpha,
        tables.seed_deltas(features, afters, methods),
        tables.seed_deltas(features, controls, methods) if controls else None,
    )
