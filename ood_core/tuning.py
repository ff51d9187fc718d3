"""Choosing hyperparameters honestly: search on validation data that never touches the test OOD sets.

A ``Protocol`` says where validation data comes from and is recorded with every tuned result:

- validation ID: a seeded, class-stratified part of the ID **test** split (OpenOOD's convention; the rest stays the
  test ID set) or of the ID **train** split (the fits then still see those images: a mild leak, which is why the
  test split is the default);
- validation OOD: pseudo-OOD made from ID training images only (``@jigsaw3``, ``@blur``, ``@permute4``, ``@noise``,
  ``@invert``, ``@mix``; see ``inputs.variants``) and/or named validation sets the user registered (OpenOOD's
  ``val_tin``), refused when one is a test OOD set of the workspace or shares files with one.

``default_protocol`` is OpenOOD v1.5's where the workspace's benchmark has a validation OOD set (``val_tin``, the
demo's ``val-images``): that set alone. Elsewhere (an ID set of no benchmark, or its validation set missing or made a
test set; ``default_sets`` says which) it is every pseudo-OOD variant: no single kind is trusted. On the demo the
first gives a mean regret of 0.95 AUROC points, the second 7.07 (``benchmarks/bench_tuning.py``): pseudo-OOD made
from digits does not behave like textures or photographs.

``search`` evaluates a method's parameters from its ``Param`` ranges: the whole grid when it is small, coordinate
ascent from the defaults when it is not (e.g. LINe's p_a × p_w × τ). The objective is the mean AUROC over the
validation OOD sets, the mean FPR95, or the AUROC subject to an ID accuracy floor (for methods that change the
classifier's predictions: LINe). ``save``/``load`` keep the result with its provenance in a JSON file that is refused
for another model or ID set.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field, StrictInt, StringConstraints, model_validator

from .comparisons import setting_difference
from .engine.cache import FeatureSet
from .engine.features import dataset_images, feature_set
from .errors import OODLabError
from .inputs import benchmarks, catalog
from .inputs.files import digest
from .inputs.variants import PSEUDO_OOD
from .memo import BoundedMemo
from .metrics import Difference, set_metrics
from .rows import stratified_rows
from .schema import Strict, checked, read_json
from .scores.line import LINE, line_logits
from .scores.method import BLOCK_SEPARATOR, Method
from .scores.registry import METHODS
from .workspace import LoadedWorkspace

OBJECTIVES = ("dominant", "robust", "worst", "auroc", "fpr95", "auroc@acc")
OBJECTIVE_LABELS = {
    "dominant": "mean AUROC, never below the default on any validation set",
    "robust": "mean − sd of AUROC over the validation sets",
    "worst": "worst validation set's AUROC",
    "auroc": "mean AUROC",
    "fpr95": "mean FPR95 (lower)",
    "auroc@acc": "mean AUROC with an ID accuracy floor",
}
DEFAULT_OBJECTIVE = "dominant"
TOLERANCE = 0.5  # AUROC points a "dominant" candidate may lose against the default on one validation set
MIN_GAIN = 0.1  # points (AUROC, or FPR95 for that objective): a smaller gain is no reason to leave the paper default
AGREEMENT_WARNING = (
    0.5  # below this mean rank correlation the variants disagree on the candidates
)
MAX_GRID = 200  # larger grids are searched by coordinate ascent
TUNED_FORMAT = 1
Progress = Callable[[int, int], None]


PseudoVariant = Literal[PSEUDO_OOD]  # type: ignore[valid-type]
DatasetName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Protocol(Strict):
    """Where the validation data comes from (recorded with every tuned result; checked wherever it is read)."""

    pseudo: tuple[PseudoVariant, ...] = (
        PSEUDO_OOD  # every variant (``default_protocol`` takes a benchmark's validation set instead where it has one)
    )
    sets: tuple[DatasetName, ...] = ()
    id_source: Literal["test", "train"] = (
        "test"  # held out of the ID test split, or of ID train
    )
    id_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.2
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0

    @model_validator(mode="after")
    def _has_a_source(self) -> Protocol:
        if not self.pseudo and not self.sets:
            raise ValueError(
                "give at least one validation OOD source (pseudo:… or set:…)"
            )
        return self

    def describe(self) -> str:
        parts = (
            [f"pseudo-OOD {', '.join('@' + p for p in self.pseudo)}"]
            if self.pseudo
            else []
        )
        parts += [f"validation sets {', '.join(self.sets)}"] if self.sets else []
        return (
            f"{'; '.join(parts)}; validation ID = {self.id_fraction:.0%} of ID {self.id_source} "
            f"(class-stratified, seed {self.seed})"
        )


def protocol(**values) -> Protocol:
    """A ``Protocol`` from keyword values (CLI flags, page widgets), or one ``OODLabError`` line."""
    return checked(Protocol, values, "validation protocol")


def default_protocol(
    features: LoadedWorkspace,
    id_source: str = "test",
    id_fraction: float = 0.2,
    seed: int = 0,
) -> Protocol:
    """The benchmark's validation OOD sets where the workspace's ID set belongs to a benchmark that has them, they
    are registered and none is a test set (OpenOOD v1.5's protocol); every pseudo-OOD variant otherwise, which needs
    images to make them from."""
    sets, _ = default_sets(features)
    if not sets and not catalog.get_dataset(features.id_dataset).has_images:
        raise OODLabError(
            f"'{features.id_dataset}' has no images to make pseudo-OOD from and no benchmark validation set: name "
            "validation OOD sets that are not test sets (tune --val set:<dataset>[,…]; on the Tune page, "
            "'Validation OOD sets')"
        )
    return protocol(
        pseudo=() if sets else PSEUDO_OOD,
        sets=sets,
        id_source=id_source,
        id_fraction=float(id_fraction),
        seed=int(seed),
    )


def default_sets(features: LoadedWorkspace) -> tuple[tuple[str, ...], str]:
    """The validation OOD sets ``default_protocol`` uses (empty: pseudo-OOD), and why it falls back to pseudo-OOD
    although the ID set's benchmark has validation sets ("" when it does not fall back, or the benchmark has none)."""
    sets = benchmarks.validation_sets(features.id_dataset)
    known = catalog.datasets() if sets else {}
    unusable = {
        name: (
            "is a test set of this workspace"
            if name in features.ood
            else "is not registered (its image list is not under the data root)"
        )
        for name in sets
        if name not in known or name in features.ood
    }
    if not unusable:
        return sets, ""
    reasons = "; ".join(f"{name} {why}" for name, why in unusable.items())
    return (
        (),
        f"The benchmark's validation OOD set {reasons}: validating on every pseudo-OOD variant instead.",
    )


def parse_protocol(
    text: str, id_source: str = "test", id_fraction: float = 0.2, seed: int = 0
) -> Protocol:
    """``"pseudo:jigsaw3,blur"``, ``"set:val_tin"`` or both joined by ``;``."""
    pseudo: list[str] = []
    sets: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, names = part.partition(":")
        items = [n.strip() for n in names.split(",") if n.strip()]
        if kind == "pseudo" and items:
            pseudo += items
        elif kind == "set" and items:
            sets += items
        else:
            raise OODLabError(
                f"--val '{part}': expected pseudo:<variant>[,…] or set:<dataset>[,…]"
            )
    unknown = [v for v in pseudo if v not in PSEUDO_OOD]
    if unknown:
        raise OODLabError(
            f"unknown pseudo-OOD variant {', '.join(unknown)}; choose from: {', '.join(PSEUDO_OOD)}"
        )
    return protocol(
        pseudo=tuple(pseudo),
        sets=tuple(sets),
        id_source=id_source,
        id_fraction=float(id_fraction),
        seed=int(seed),
    )


def subset(features: FeatureSet, rows: np.ndarray, label: str) -> FeatureSet:
    """The rows ``rows`` of a feature set (row arrays sliced, the head kept), with its own fingerprint."""
    rows = np.asarray(rows)
    arrays = {
        name: (
            features[name]
            if name.startswith("head/")
            else np.asarray(features[name])[rows]
        )
        for name in features.names
    }
    meta = {
        **{k: v for k, v in features.meta.items() if k not in ("files", "rows")},
        "rows": len(rows),
        "fingerprint": f"{features.fingerprint}:{label}:{digest(rows.tolist())[:12]}",
    }
    return FeatureSet(None, meta, arrays)


def _files(name: str) -> set[str]:
    """What a dataset is made of, for the overlap check: its files' real paths (symlinks followed), or for a
    generated or packed set (demo, CIFAR, SVHN) its source and item names; a synthetic set (no images) is only
    itself."""
    if not catalog.get_dataset(name).has_images:
        return {f"synthetic:{name}"}
    images, identity = dataset_images(name)
    root = identity.get("root")
    if root is not None and identity.get("format") is None:
        return {os.path.realpath(Path(root) / n) for n in images.names}
    origin = identity.get("generator") or f"{identity.get('format')}:{root}"
    return {f"{origin}:{n}" for n in images.names}


def check_leaks(
    protocol: Protocol, test_sets: Sequence[str], id_dataset: str | None = None
) -> None:
    """Refuse validation sets that are the ID set or a test OOD set of the workspace, or share files with one."""
    for name in protocol.sets:
        if name == id_dataset:
            raise OODLabError(
                f"validation set '{name}' is the ID dataset: its test images are what the tuned values are "
                "judged on; choose an OOD set that is not a test set"
            )
        if name in test_sets:
            raise OODLabError(
                f"validation set '{name}' is also a test OOD set of this workspace; choose another"
            )
        files = _files(name)
        for test in [*test_sets, *([id_dataset] if id_dataset else [])]:
            shared = files & _files(test)
            if shared:
                raise OODLabError(
                    f"validation set '{name}' shares {len(shared)} file(s) with "
                    f"{'the ID set' if test == id_dataset else 'test OOD set'} '{test}' "
                    f"(e.g. {min(shared)}); the tuning would see test data"
                )


@dataclass
class Split:
    """What a search scores: validation ID + OOD, and (on pages) the remaining test ID set."""

    validation: LoadedWorkspace
    test: LoadedWorkspace | None


_splits: BoundedMemo[Split] = BoundedMemo(8)


def id_parts(
    features: LoadedWorkspace, protocol: Protocol
) -> tuple[FeatureSet, FeatureSet]:
    """The validation ID rows (seeded, class-stratified) and the ID test set that remains for testing: the rest of
    the test split when validation comes from it, the whole test split when it comes from train."""
    source = features.id_test if protocol.id_source == "test" else features.id_train
    if source is None:
        raise OODLabError(
            f"the ID dataset has no {protocol.id_source} split to hold validation images out of"
        )
    labels = np.asarray(source.labels)
    rows = stratified_rows(labels, protocol.id_fraction, protocol.seed)
    kept = len(labels) - len(rows) if protocol.id_source == "test" else len(labels)
    if len(rows) == 0 or kept == 0:
        raise OODLabError(
            f"holding out {protocol.id_fraction:.1%} of the {len(labels):,} ID {protocol.id_source} images leaves "
            f"{len(rows):,} for validation and {kept:,} for testing; choose a share that leaves both non-empty"
        )
    id_val = subset(source, rows, f"val-{protocol.seed}")
    if protocol.id_source == "train":
        return id_val, features.id_test
    rest = np.setdiff1d(np.arange(len(labels)), rows)
    return id_val, subset(source, rest, f"rest-{protocol.seed}")


def split(
    features: LoadedWorkspace,
    protocol: Protocol,
    progress: Callable[[str, int, int], None] | None = None,
) -> Split:
    """Validation and test workspaces for ``protocol``: validation ID rows held out (seeded, stratified) of ID test
    or train; validation OOD sets extracted (cached) from ID train images or registered sets. Memoised per
    workspace and protocol."""
    check_leaks(protocol, list(features.ood), features.id_dataset)
    key = (
        features.model,
        features.id_test.fingerprint,
        tuple((name, f.fingerprint) for name, f in features.ood.items()),
        protocol,
    )
    cached = _splits.peek(key)
    if cached is not None:
        return cached
    id_val, id_test = id_parts(features, protocol)
    if features.model is None or features.id_dataset is None:
        raise OODLabError(
            "tuning needs a workspace of a registered model and ID dataset"
        )
    ood_val = {}
    for variant in protocol.pseudo:
        name = f"{features.id_dataset}@{variant}"
        if variant == "jigsaw3" and features.jigsaw is not None:
            ood_val[name] = features.jigsaw
            continue
        report = (lambda d, t, name=name: progress(name, d, t)) if progress else None
        ood_val[name] = feature_set(
            features.model, name, "train", cache=features.cache, progress=report
        )
    for name in protocol.sets:
        report = (lambda d, t, name=name: progress(name, d, t)) if progress else None
        ood_val[name] = feature_set(
            features.model, name, cache=features.cache, progress=report
        )
    validation = replace(features, id_test=id_val, ood=ood_val)
    test = replace(features, id_test=id_test) if features.ood else None
    result = Split(validation, test)
    _splits.put(key, result)
    return result


# --- the search -----------------------------------------------------------------------------------------------------


def dimensions(
    method: Method, features: LoadedWorkspace, points: int = 11
) -> dict[str, list]:
    """The values searched per parameter: ``points`` across each numeric range (paper default included), every
    probed block for block parameters, the deepest 1, 2, … and all blocks for block-set parameters; choice
    parameters stay fixed."""
    dims = {}
    for p in method.params:
        if p.numeric:
            values = set(p.grid(points)) | {p.default_for(features.benchmark)}
            dims[p.name] = sorted(values)
        elif p.kind == "block":
            dims[p.name] = list(features.blocks)
        elif p.kind == "blocks":
            blocks = list(features.blocks)
            dims[p.name] = [
                BLOCK_SEPARATOR.join(blocks[-n:]) for n in range(1, len(blocks) + 1)
            ]
    return dims


def objective_value(
    features: LoadedWorkspace,
    method: Method,
    params: Mapping[str, object],
    objective: str,
    min_accuracy: float,
    floor: Mapping[str, float] | None = None,
) -> tuple[float, dict[str, float]]:
    """The quantity to maximise on ``features``' sets (FPR95 negated; −inf when the accuracy floor is broken) and
    each validation set's AUROC. ``dominant``: the mean AUROC of a candidate that is nowhere more than
    ``TOLERANCE`` below the default (``floor``: the default's AUROC per set), −inf otherwise; ``robust``: mean −
    standard deviation over the sets; ``worst``: the lowest set's AUROC."""
    id_scores, ood = features.scores(method, params)
    metrics = set_metrics(id_scores, ood)
    aurocs = {name: m["AUROC"] for name, m in metrics.items()}
    values = np.array(list(aurocs.values()))
    if objective == "fpr95":
        return -float(np.mean([m["FPR95"] for m in metrics.values()])), aurocs
    if objective == "auroc@acc" and accuracy(features, method, params) < min_accuracy:
        return -math.inf, aurocs
    if objective == "dominant" and floor is not None:
        beaten = any(aurocs[name] < floor[name] - TOLERANCE for name in aurocs)
        return (-math.inf if beaten else float(values.mean())), aurocs
    if objective == "robust":
        return float(values.mean() - (values.std() if len(values) > 1 else 0.0)), aurocs
    if objective == "worst":
        return float(values.min()), aurocs
    return float(values.mean()), aurocs


def accuracy(
    features: LoadedWorkspace, method: Method, params: Mapping[str, object]
) -> float:
    """ID accuracy (%) of the classifier as the method leaves it: LINe prunes the head, the others do not."""
    test = features.id_test
    labels = np.asarray(test.labels)
    if method is not LINE:
        return features.accuracy
    values = features.resolved(method, params)
    phi = features.state(method).phi
    logits, _ = line_logits(
        test.penultimate,
        test["head/weight"],
        test["head/bias"],
        phi,
        values["p_a"],
        values["p_w"],
        values["tau"],
    )
    return 100 * float((logits.argmax(1) == labels).mean())


@dataclass
class SearchResult:
    method: str
    objective: str
    chosen: dict
    default: dict
    value: float  # the objective at the chosen point (FPR95 negated)
    default_value: float
    evaluated: list[dict] = field(
        default_factory=list
    )  # every point tried: params, validation objective, each validation set's AUROC
    strategy: str = "grid"
    seconds: float = 0.0
    best: dict = field(
        default_factory=dict
    )  # the validation-best point (``chosen`` unless the default stayed)
    kept_default: bool = False
    reason: str = ""  # why the default stayed, or what the chosen point gains
    gain: dict = field(
        default_factory=dict
    )  # the validation-best − default, paired: delta, low, high, p
    agreement: float = (
        math.nan
    )  # the proxy's self-consistency: mean rank correlation between validation sets

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def unreliable(self) -> bool:
        """Whether the validation sets disagree on how to rank the candidates (the proxy cannot be trusted)."""
        return not math.isnan(self.agreement) and self.agreement < AGREEMENT_WARNING


def search(
    features: LoadedWorkspace,
    method: Method,
    objective: str = DEFAULT_OBJECTIVE,
    min_accuracy: float = 0.0,
    points: int = 11,
    progress: Progress | None = None,
) -> SearchResult:
    """Maximise the objective over the method's parameters on ``features`` (the validation workspace); the best
    point replaces the default only when its gain on the validation data is significant (``settle``)."""
    if objective not in OBJECTIVES:
        raise OODLabError(
            f"unknown objective '{objective}'; choose one of: {', '.join(OBJECTIVES)}"
        )
    start = time.perf_counter()
    dims = dimensions(method, features, points)
    default = {k: v for k, v in features.resolved(method).items() if k in dims}
    seen: dict[str, float] = {}
    evaluated: list[dict] = []
    floor = (
        objective_value(features, method, default, "auroc", min_accuracy)[1]
        if objective == "dominant"
        else None
    )

    def value_of(point: dict) -> float:
        key = digest(point)
        if key not in seen:
            seen[key], aurocs = objective_value(
                features, method, point, objective, min_accuracy, floor
            )
            evaluated.append(
                {"params": dict(point), "value": seen[key], "sets": aurocs}
            )
            if progress:
                progress(len(evaluated), budget)
        return seen[key]

    def distance(point: dict) -> int:
        """Grid steps from the default: among equal values the search keeps the point nearest the paper's."""
        return sum(
            abs(values.index(point[name]) - values.index(default[name]))
            if default[name] in values
            else 0
            for name, values in dims.items()
        )

    def rank(point: dict) -> tuple[float, int]:
        return value_of(point), -distance(point)

    grid_size = math.prod(len(v) for v in dims.values()) if dims else 1
    if grid_size <= MAX_GRID:
        strategy, budget = "grid", grid_size
        points_ = (
            [dict(zip(dims, combo)) for combo in itertools.product(*dims.values())]
            if dims
            else [{}]
        )
        best = max(points_, key=rank)
    else:
        strategy, budget = "coordinate ascent", sum(len(v) for v in dims.values()) * 3
        best = dict(default)
        for _ in range(4):
            improved = False
            for name, values in dims.items():
                candidates = [{**best, name: v} for v in values]
                top = max(candidates, key=rank)
                if value_of(top) > value_of(best) + 1e-12:
                    best, improved = top, True
            if not improved:
                break
    value_of(default)
    result = SearchResult(
        method=method.name,
        objective=objective,
        chosen=best,
        default=default,
        value=value_of(best),
        default_value=value_of(default),
        evaluated=evaluated,
        strategy=strategy,
        best=best,
        agreement=agreement(evaluated),
    )
    settled = settle(features, method, result)
    settled.seconds = round(time.perf_counter() - start, 3)
    return settled


def settle(
    features: LoadedWorkspace, method: Method, result: SearchResult
) -> SearchResult:
    """Keep the paper default unless the validation-best point beats it significantly on the validation data, by
    at least ``MIN_GAIN`` points: a paired test of the two settings on the same validation samples (DeLong on the
    mean AUROC over the validation sets; a paired bootstrap of FPR95 for the FPR95 objective) at 5 %. With
    thousands of validation images a gain of a few hundredths of a point is significant (Energy at T = 0.1
    against T = 1 on the CIFAR-size workspace: +0.0, p = 6e-8) and no reason to leave the paper."""
    best, default = result.best, result.default
    if digest(best) == digest(default):
        return replace(result, reason="the validation-best point is the default itself")
    metric = "FPR95" if result.objective == "fpr95" else "AUROC"
    gap = setting_difference(features, (method, best), (method, default), metric)
    if metric == "FPR95":  # lower is better: a gain is a negative difference
        gap = Difference(-gap.delta, -gap.high, -gap.low, gap.p)
    gain = asdict(gap)
    if gap.significant and gap.delta >= MIN_GAIN and result.value != -math.inf:
        return replace(
            result,
            gain=gain,
            reason=f"validation {metric} gain over the default {gap.describe()}, p = {gap.p:.3g}",
        )
    if result.value == -math.inf:
        why = "no candidate meets the objective's constraint"
    elif gap.delta <= 0:
        why = f"the validation-best point does not beat it on the paired test ({metric} {gap.describe()})"
    elif not gap.significant:
        why = f"the validation-best point's {metric} gain {gap.describe()} is not significant (paired test, p = {gap.p:.2g})"
    else:
        why = (
            f"the validation-best point's {metric} gain {gap.describe()} is under the {MIN_GAIN:g}-point minimum "
            f"worth leaving the paper's value for (p = {gap.p:.2g})"
        )
    return replace(
        result,
        chosen=dict(default),
        value=result.default_value,
        kept_default=True,
        gain=gain,
        reason=f"kept the default: {why}",
    )


def agreement(evaluated: Sequence[dict]) -> float:
    """How consistently the validation sets rank the candidates: the mean Spearman correlation, over every pair of
    sets, of the candidates' AUROC on one set and on the other (1: the sets agree; NaN: one set or one candidate)."""
    frame = pd.DataFrame([point["sets"] for point in evaluated if point.get("sets")])
    frame = frame.loc[:, frame.std() > 0]
    if frame.shape[0] < 3 or frame.shape[1] < 2:
        return math.nan
    corr = frame.corr(method="spearman").to_numpy()
    pairs = corr[np.triu_indices_from(corr, k=1)]
    pairs = pairs[np.isfinite(pairs)]
    return float(pairs.mean()) if len(pairs) else math.nan


def tunable(method: Method) -> bool:
    """Whether ``search`` has anything to choose for ``method`` (cache-scored, with a numeric, block or block-set
    parameter)."""
    return method.cost == "cache" and any(
        p.numeric or p.kind in ("block", "blocks") for p in method.params
    )


# --- how good the proxy is: the same points on the test sets --------------------------------------------------------


def mean_metrics(
    features: LoadedWorkspace, method: Method, params: Mapping[str, object]
) -> tuple[float, float]:
    """Mean AUROC and mean FPR95 (%) of ``method`` at ``params`` over ``features``' OOD sets."""
    return _means(set_metrics(*features.scores(method, params)))


def _means(metrics: Mapping[str, Mapping[str, float]]) -> tuple[float, float]:
    return (
        float(np.mean([m["AUROC"] for m in metrics.values()])),
        float(np.mean([m["FPR95"] for m in metrics.values()])),
    )


def worst_set_change(
    tuned: Mapping[str, Mapping[str, float]], default: Mapping[str, Mapping[str, float]]
) -> tuple[str, float]:
    """From per-set metrics at the tuned values and at the defaults: the OOD set whose AUROC the tuned values lower
    most, and the change (points; > 0: every set gains). A mean over sets can rise while one set falls far: this is
    the set a tuned choice gives up."""
    changes = {name: tuned[name]["AUROC"] - default[name]["AUROC"] for name in tuned}
    worst = min(changes, key=changes.get)
    return worst, float(changes[worst])


_points: BoundedMemo[pd.DataFrame] = BoundedMemo(64)


def points_table(found: Split, method: Method, result: SearchResult) -> pd.DataFrame:
    """Every point the search evaluated: its parameters, the validation objective (as shown: FPR95 positive) and,
    when the split has test sets, the test mean AUROC and FPR95 at the same point (memoised: pages redraw it)."""
    test = found.test
    key = (
        method.name,
        digest(result.as_dict()),
        None if test is None else test.id_test.fingerprint,
        None if test is None else tuple(f.fingerprint for f in test.ood.values()),
    )
    return _points.get(key, lambda: _points_table(found, method, result))


def _points_table(found: Split, method: Method, result: SearchResult) -> pd.DataFrame:
    sign = -1.0 if result.objective == "fpr95" else 1.0
    rows = []
    for point in result.evaluated:
        row = {**point["params"], "validation": sign * point["value"]}
        if found.test is not None:
            row["test AUROC"], row["test FPR95"] = mean_metrics(
                found.test, method, point["params"]
            )
        rows.append(row)
    return pd.DataFrame(rows)


def regret_row(found: Split, method: Method, result: SearchResult) -> dict:
    """Test metrics at the paper defaults, at the tuned values and at the test-oracle best of the evaluated points;
    the regret (test-best minus tuned AUROC, in points), the validation↔test rank correlation over the points and the
    test set the tuned values lower most against the defaults (``worst_set_change``)."""
    row = {
        "method": method.label,
        "tuned": described(result.chosen),
        "default kept": result.kept_default,
        "proxy agreement": result.agreement,
        "points": len(result.evaluated),
        "search": result.strategy,
        "seconds": result.seconds,
    }
    if found.test is None:
        return row
    points = points_table(found, method, result)
    best = points.loc[points["test AUROC"].idxmax()]
    at_default = set_metrics(*found.test.scores(method, result.default))
    at_tuned = set_metrics(*found.test.scores(method, result.chosen))
    default_auroc, default_fpr = _means(at_default)
    tuned_auroc, tuned_fpr = _means(at_tuned)
    validation = points["validation"] * (-1 if result.objective == "fpr95" else 1)
    worst_set, worst_change = worst_set_change(at_tuned, at_default)
    return {
        **row,
        "worst set": worst_set,
        "worst set Δ": worst_change,
        "AUROC default": default_auroc,
        "AUROC tuned": tuned_auroc,
        "AUROC test-best": float(best["test AUROC"]),
        "regret": float(best["test AUROC"]) - tuned_auroc,
        "FPR95 default": default_fpr,
        "FPR95 tuned": tuned_fpr,
        "rank corr": (
            float(validation.corr(points["test AUROC"], method="spearman"))
            if len(points) > 2
            else math.nan
        ),
        "test-best at": described(
            {k: best[k] for k in result.chosen if k in points.columns}
        ),
    }


def regret_table(found: Split, results: Sequence[SearchResult]) -> pd.DataFrame:
    """One ``regret_row`` per tuned method, best tuned test AUROC first (the leaderboard of tuned methods)."""
    table = pd.DataFrame([regret_row(found, METHODS[r.method], r) for r in results])
    if "AUROC tuned" in table:
        table = table.sort_values("AUROC tuned", ascending=False)
    return table.reset_index(drop=True)


def described(values: Mapping[str, object]) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, (float, np.floating)) else f"{k}={v}"
        for k, v in values.items()
    )


# --- provenance ----------------------------------------------------------------------------------------------------


def provenance(features: LoadedWorkspace) -> dict:
    """What a tuned result is valid for: the model's fingerprint and the ID entries'."""
    return {
        "model": {
            "name": features.model,
            "fingerprint": digest(features.id_test.meta.get("model"))[:16],
        },
        "id": {
            "dataset": features.id_dataset,
            "test": features.id_test.fingerprint,
            "train": (
                features.id_train.fingerprint if features.id_train is not None else None
            ),
        },
    }


def save(
    path: str | Path,
    features: LoadedWorkspace,
    protocol: Protocol,
    results: Sequence[SearchResult],
) -> Path:
    """Write ``tuned.json``: provenance, protocol and every method's search."""
    path = Path(path)
    document = {
        "ood_lab": "tuned",
        "format": TUNED_FORMAT,
        **provenance(features),
        "protocol": {**protocol.model_dump(), "description": protocol.describe()},
        "objective": results[0].objective if results else None,
        "methods": {r.method: r.as_dict() for r in results},
    }
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(_standard(document), indent=1, allow_nan=False))
    os.replace(partial, path)  # a reader never sees half a file
    return path


def _standard(value: object) -> object:
    """``value`` as standard JSON: numpy numbers as Python's, a non-finite float (an objective's −inf, the proxy
    agreement of a single validation set) as ``null``, which jq and browsers read where ``NaN`` is refused."""
    if isinstance(value, Mapping):
        return {key: _standard(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_standard(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- tuned.json -----------------------------------------------------------------------------------------------------

Value = (
    StrictInt
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=200)]
)


class SavedProtocol(Protocol):
    description: Annotated[str, StringConstraints(max_length=2_000)] = ""


class SavedPoint(Strict):
    params: dict[str, Value]
    # null where the objective rejected the point (−inf in files written before tuned.json was standard JSON)
    value: float | None
    sets: dict[str, float] = Field(default_factory=dict)  # each validation set's AUROC


class SavedSearch(Strict):
    method: str
    objective: Literal[OBJECTIVES]  # type: ignore[valid-type]
    chosen: dict[str, Value]
    default: dict[str, Value]
    value: float | None
    default_value: float | None
    evaluated: tuple[SavedPoint, ...] = ()
    strategy: Literal["grid", "coordinate ascent"] = "grid"
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    best: dict[str, Value] = Field(default_factory=dict)
    kept_default: bool = False
    reason: Annotated[str, StringConstraints(max_length=2_000)] = ""
    gain: dict[str, float | None] = Field(default_factory=dict)
    agreement: float | None = None  # null with a single validation set


class ModelRef(Strict):
    name: str
    fingerprint: str


class IdRef(Strict):
    dataset: str
    test: str
    train: str | None


class TunedFile(Strict):
    """``tuned.json`` as written by ``save`` (and checked field by field when read)."""

    ood_lab: Literal["tuned"]
    format: Literal[TUNED_FORMAT]  # type: ignore[valid-type]
    model: ModelRef
    id: IdRef
    protocol: SavedProtocol
    objective: Literal[OBJECTIVES] | None  # type: ignore[valid-type]
    methods: dict[str, SavedSearch]


@dataclass(frozen=True)
class Tuned:
    """A tuned-values file read back: the chosen parameters per method and the protocol they were chosen under."""

    values: dict[str, dict]
    protocol: Protocol
    objective: str

    def testing(self, features: LoadedWorkspace) -> LoadedWorkspace:
        """``features`` with the validation ID rows taken out of the ID test set (they were seen while tuning)."""
        return replace(features, id_test=id_parts(features, self.protocol)[1])


def load(path: str | Path, features: LoadedWorkspace) -> Tuned:
    """The tuned values in ``path``, every field checked (``TunedFile``) and every chosen value checked against its
    method's parameter ranges and this model's blocks; refused for another model or ID set."""
    document = read_json(TunedFile, Path(path), "tuned-values file (tuned.json)")
    expected = provenance(features)
    model = document.model.model_dump()
    if model != expected["model"]:
        raise OODLabError(
            f"{path} was tuned for model {model['name']} ({model['fingerprint']}), not for "
            f"{expected['model']['name']} ({expected['model']['fingerprint']}); tune again for this model"
        )
    if document.id.model_dump() != expected["id"]:
        raise OODLabError(
            f"{path} was tuned on ID set {document.id.dataset} with other features than "
            f"{expected['id']['dataset']} has here; tune again for this ID set"
        )
    unknown = sorted(set(document.methods) - set(METHODS))
    if unknown:
        raise OODLabError(
            f"{path} names unknown method(s) {', '.join(unknown)}; was it written by a newer OOD Lab?"
        )
    values = {name: dict(result.chosen) for name, result in document.methods.items()}
    for name, chosen in values.items():
        try:
            METHODS[name].resolve(features.blocks, chosen)
        except OODLabError as exc:
            raise OODLabError(f"{path}: methods.{name}.chosen: {exc}") from None
    fields = document.protocol.model_dump(exclude={"description"})
    return Tuned(values, Protocol(**fields), document.objective or "auroc")
