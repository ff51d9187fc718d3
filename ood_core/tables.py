"""Tables behind the pages, the CLI and reports: metric tables, sweeps, block selection, LINe's trade-offs, binned
histograms, extremes and where uploaded images fall — all from a loaded workspace's cached arrays."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from .engine.cache import FeatureSet
from .inputs import catalog
from .inputs.files import digest
from .memo import BoundedMemo
from .metrics import BOOTSTRAP_RESAMPLES, METRICS, bootstrap_table, metrics_table
from .scores.line import Evidence, id_evidence, line_logits
from .scores.method import Method
from .scores.registry import METHODS, get_method
from .training.background import BackgroundSettings
from .training.finetune import SEEDS, background_model_name
from .workspace import LoadedWorkspace, Workspace, cached_workspace

FLAG_PERCENTILE = 5.0  # below the 5th percentile of ID scores = rejected at 95% TPR


def method_label(method: Method, params: Mapping[str, object]) -> str:
    return method.label + "".join(f" {k}={v}" for k, v in params.items())


def evaluate(
    features: LoadedWorkspace,
    methods: Sequence[tuple[Method, dict]],
    resamples: int = 0,
) -> pd.DataFrame:
    """Metrics table (%, one row per method × OOD set plus a per-method mean, DeLong's AUROC interval) for
    ``(method, params)`` pairs; with ``resamples``, also the bootstrap intervals of FPR95 and AUPR-In/Out."""
    results = {method_label(m, p): features.scores(m, p) for m, p in methods}
    table = metrics_table(results)
    if resamples:
        intervals = bootstrap_table(results, resamples=resamples)
        table = table.merge(intervals, on=["method", "ood_set"], how="left")
    return table


def before_after(
    before: LoadedWorkspace, after: LoadedWorkspace, methods: Sequence[Method]
) -> pd.DataFrame:
    """Metrics (%) of each method with default parameters on two workspaces, rows paired per method
    (``<label> · before`` then ``<label> · after``)."""
    return metrics_table(
        {
            f"{method.label} · {label}": features.scores(method)
            for method in methods
            for label, features in (("before", before), ("after", after))
        }
    )


def parameter_sweep(
    features: LoadedWorkspace,
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
    features: LoadedWorkspace, method_name: str = "nap", params: dict | None = None
) -> pd.DataFrame:
    """Metrics of a block-parameterised method on every probed block (the NAP paper's Fig. 5 question)."""
    method = get_method(method_name)
    sweep = parameter_sweep(
        features, method, params or {}, "block", features.id_test.blocks
    )
    return sweep.rename(columns={"value": "block"})


def all_methods_table(
    features: LoadedWorkspace,
    methods: Sequence[tuple[Method, dict]],
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """The Compare table: one row per (method, OOD set) plus per-method means, metrics in %; rows are named by
    the methods' labels (each method appears once). Each method's rows are memoised, so a slider move recomputes
    only the moved method's scores and metrics. ``progress(done, total, label)`` is called before each method
    (a method's first use on a workspace fits and stores its train statistics: seconds at benchmark size)."""
    parts = []
    for done, (method, params) in enumerate(methods):
        if progress:
            progress(done, len(methods), method.label)
        parts.append(method_rows(features, method, params))
    return pd.concat(parts, ignore_index=True) if parts else metrics_table({})


def default_settings(features: LoadedWorkspace) -> list[tuple[Method, dict]]:
    """Every method scored from the cache alone that this workspace can score, at its defaults: the Compare
    table's rows."""
    return [
        (method, {})
        for method in METHODS.values()
        if method.cost == "cache" and not features.unavailable(method)
    ]


def with_bootstrap(
    features: LoadedWorkspace,
    table: pd.DataFrame,
    methods: Sequence[tuple[Method, dict]],
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> pd.DataFrame:
    """``table`` (one row per method label and OOD set) with the bootstrap intervals of FPR95 and AUPR-In/Out
    (each method's resamples are memoised per score vector, so a slider move bootstraps only the moved method)."""
    results = {m.label: features.scores(m, p) for m, p in methods}
    intervals = bootstrap_table(results, resamples=resamples)
    return table.merge(intervals, on=["method", "ood_set"], how="left")


_rows: BoundedMemo[pd.DataFrame] = BoundedMemo(512)


def method_rows(
    features: LoadedWorkspace, method: Method, params: Mapping[str, object]
) -> pd.DataFrame:
    """One method's metric rows (per OOD set and the mean) on this workspace, memoised by content."""
    key = (
        method.label,
        digest(features.resolved(method, params)),
        features.id_test.fingerprint,
        tuple((name, f.fingerprint) for name, f in features.ood.items()),
    )
    return _rows.get(
        key, lambda: metrics_table({method.label: features.scores(method, params)})
    )


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


def prior_points(
    features: LoadedWorkspace,
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


def paired_before_after(
    before: LoadedWorkspace,
    after: Sequence[LoadedWorkspace],
    methods: Sequence[Method],
    control: Sequence[LoadedWorkspace] = (),
) -> pd.DataFrame:
    """AUROC (%) of each method at its defaults before and after fine-tuning, paired per (method, OOD set), the
    fine-tune repeated over seeds (``after``, one workspace per seed): columns ``before``, ``after`` (mean over
    seeds), ``Δ`` (mean), ``Δ sd`` (over seeds) and ``Δ per seed``; with the α = 0 ``control`` models (the same
    seeds) also ``Δ control``, ``Δ control sd`` and ``Δ − Δ control`` (what the extra loss term adds)."""

    def auroc(features: LoadedWorkspace) -> pd.Series:
        table = metrics_table({m.label: features.scores(m) for m in methods})
        return table.set_index(["method", "ood_set"])["AUROC"]

    start = auroc(before)
    runs = pd.DataFrame({i: auroc(f) - start for i, f in enumerate(after)})
    frame = pd.DataFrame({"before": start, "after": start + runs.mean(axis=1)})
    frame["Δ"] = runs.mean(axis=1)
    frame["Δ sd"] = runs.std(axis=1, ddof=1) if len(after) > 1 else float("nan")
    frame["Δ per seed"] = [
        ", ".join(f"{v:+.1f}" for v in row) for row in runs.to_numpy()
    ]
    if control:
        controls = pd.DataFrame({i: auroc(f) - start for i, f in enumerate(control)})
        frame["Δ control"] = controls.mean(axis=1)
        frame["Δ control sd"] = (
            controls.std(axis=1, ddof=1) if len(control) > 1 else float("nan")
        )
        frame["Δ − Δ control"] = frame["Δ"] - frame["Δ control"]
    return frame.reset_index()


def seed_table(
    features: LoadedWorkspace,
    method: Method,
    runs: Sequence[Mapping[str, object]],
    left_out: str | None = None,
) -> pd.DataFrame:
    """AUROC (%) of one trained method over several training runs (``runs``: its parameters per seed): one row per
    run (``seed <s>``) plus ``mean`` and ``sd`` rows, one column per OOD set (``left_out`` dropped) and ``mean``."""
    rows = {}
    for params in runs:
        id_scores, ood = features.scores(method, params)
        ood = {name: v for name, v in ood.items() if name != left_out}
        table = metrics_table({method.label: (id_scores, ood)})
        rows[f"seed {params.get('seed', 0)}"] = table.set_index("ood_set")["AUROC"]
    frame = pd.DataFrame(rows).T
    summary = pd.DataFrame(
        {
            "mean": frame.mean(),
            "sd": frame.std(ddof=1) if len(frame) > 1 else frame.mean() * float("nan"),
        }
    ).T
    return pd.concat([frame, summary])


def background_runs(
    base: LoadedWorkspace, settings: BackgroundSettings
) -> list[LoadedWorkspace] | None:
    """The cached workspaces of ``base``'s model fine-tuned with ``settings`` once per seed (``finetune.SEEDS``),
    on the same ID and OOD sets; ``None`` unless every seed's model is registered and its features cached."""
    runs = []
    for seed in SEEDS:
        model = background_model_name(base.model, replace(settings, seed=seed))
        found = (
            cached_workspace(Workspace(model, base.id_dataset, tuple(base.ood)))
            if model in catalog.models()
            else None
        )
        if found is None:
            return None
        runs.append(found)
    return runs


def seed_deltas(
    before: LoadedWorkspace, after: Sequence[LoadedWorkspace], methods: Sequence[Method]
) -> dict[str, list[float]]:
    """Per method, the change of its mean AUROC over the OOD sets, one value per seed (after − before)."""

    def means(features: LoadedWorkspace) -> pd.Series:
        table = metrics_table({m.label: features.scores(m) for m in methods})
        return table.groupby("method", sort=False)["AUROC"].mean()

    start = means(before)
    per_seed = [means(f) - start for f in after]
    return {m.label: [float(s[m.label]) for s in per_seed] for m in methods}


def per_set(
    frame: pd.DataFrame, index: str, values: str, sets: Sequence[str]
) -> pd.DataFrame:
    """``frame`` pivoted to one column per OOD set, in ``sets`` order (the workspace's), with ``mean`` last, and
    rows in their order of appearance."""
    table = frame.pivot(index=index, columns="ood_set", values=values)
    columns = [s for s in sets if s in table] + (["mean"] if "mean" in table else [])
    return table.loc[frame[index].unique(), columns]


def block_selection_table(
    features: LoadedWorkspace, ratios: pd.Series
) -> tuple[pd.DataFrame, float]:
    """NormRatio next to the true FeatureNorm AUROC of every block on every OOD set (and their mean), plus the
    Spearman rank correlation between NormRatio and the mean AUROC across blocks."""
    from scipy.stats import spearmanr

    sweep = block_sweep(features, "featurenorm")
    auroc = per_set(sweep, "block", "AUROC", list(features.ood)).loc[list(ratios.index)]
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


def mean_auroc(features: LoadedWorkspace, method: Method, params: dict) -> float:
    """AUROC (%) of one method setting averaged over the workspace's OOD sets."""
    table = metrics_table({method.label: features.scores(method, params)}, mean=False)
    return float(table["AUROC"].mean())


def line_sweep(
    features: LoadedWorkspace, grid: Sequence[float], tau: float
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


def line_evidence(features: LoadedWorkspace, params: dict) -> Evidence:
    """What LINe at ``params`` does to the ID test samples (accuracy and mean winning logit, before and after)."""
    method = get_method("line")
    values = features.resolved(method, params)
    test = features.id_test
    return id_evidence(
        test.penultimate, test.logits, test.labels, test["head/weight"], test["head/bias"],
        features.state(method).phi, values["p_a"], values["p_w"], values["tau"],
    )  # fmt: skip


def line_pareto(
    features: LoadedWorkspace, percentiles: Sequence[float], tau: float
) -> pd.DataFrame:
    """As pruning grows (p_a = p_w = p), in the order of ``percentiles``: ID accuracy of the pruned head vs mean
    AUROC (the trade-off pruning methods face)."""
    method = get_method("line")
    phi = features.state(method).phi
    test = features.id_test
    labels = np.asarray(test.labels)
    rows = []
    for p in percentiles:
        logits, _ = line_logits(
            test.penultimate, test["head/weight"], test["head/bias"], phi, p, p, tau
        )
        rows.append(
            {
                "p": p,
                "ID accuracy": 100 * float((logits.argmax(1) == labels).mean()),
                "AUROC": mean_auroc(features, method, {"p_a": p, "p_w": p, "tau": tau}),
            }
        )
    return pd.DataFrame(rows)


def placement(
    features: LoadedWorkspace,
    uploads: FeatureSet,
    names: Sequence[str],
    methods: Sequence[Method],
):
    """Where each uploaded image falls among the ID test scores, per method (default parameters).

    Columns: image, method, score, ID percentile (share of ID test images scoring lower, %), verdict ("OOD-like"
    below the 5th percentile, the threshold that keeps 95% of ID).
    """
    frames = []
    for method in methods:
        reference = np.sort(features.score_set(method, features.id_test))
        scores = features.score_set(method, uploads)
        percentile = (
            100 * np.searchsorted(reference, scores, side="left") / len(reference)
        )
        frames.append(
            pd.DataFrame(
                {
                    "image": list(names),
                    "method": method.label,
                    "score": scores,
                    "ID percentile": percentile,
                    "verdict": np.where(
                        percentile < FLAG_PERCENTILE, "OOD-like", "ID-like"
                    ),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def comparison_without(
    features: LoadedWorkspace,
    methods: Sequence[tuple[Method, dict]],
    excluded: str | None,
) -> pd.DataFrame:
    """Metrics of ``methods`` on every OOD set but ``excluded`` (e.g. the outlier-exposure set a decoder saw)."""
    kept = {name: f for name, f in features.ood.items() if name != excluded}
    return all_methods_table(features.with_sets(kept), methods)


def methods_markdown() -> str:
    """The README's methods table, generated from the registry (name, label, parameters with OOD Lab's default and
    the papers' CIFAR-10/CIFAR-100/ImageNet defaults, the cache arrays it reads, what else it needs, the paper)."""

    def params(method: Method) -> str:
        parts = []
        for p in method.params:
            paper = "/".join(
                f"{p.paper[b]:g}" if b in p.paper else "–"
                for b in ("cifar10", "cifar100", "imagenet")
            )
            parts.append(
                f"{p.name}={p.default}" + (f" (paper {paper})" if p.paper else "")
            )
        return ", ".join(parts) or "—"

    def extra(method: Method) -> str:
        needs = []
        if method.fit is not None:
            needs.append(f"fit on ID train: `{method.fit.name}`")
        if method.prepares:
            needs.append(
                "per set: " + ", ".join(f"`{step.name}`" for step in method.prepares)
            )
        if method.parts:
            needs.append(
                "combines "
                + " + ".join(
                    part.label
                    if part.name in METHODS
                    else f"{part.label} ({extra(part)})"
                    for part, _ in method.parts
                )
            )  # an unlisted part (RMDS's MD₀) says what it fits and stores
        if method.cost != "cache":
            needs.append(
                {"reinference": "re-runs the model", "training": "trains a network"}[
                    method.cost
                ]
            )
        return "; ".join(needs) or "—"

    lines = [
        "| name (CLI) | method | parameters: default (paper CIFAR-10/CIFAR-100/ImageNet) | reads | also needs | paper |",
        "|---|---|---|---|---|---|",
    ]
    for method in METHODS.values():
        reads = ", ".join(f"`{n}`" for n in method.needs)
        lines.append(
            f"| `{method.name}` | {method.label} | {params(method)} | {reads} | {extra(method)} | "
            f"[{method.paper.venue}]({method.paper.url}) |"
        )
    return "\n".join(lines)
