"""Slider updates at benchmark scale: every method's update time, the metrics, first use, and pytorch-ood side by side.

On a synthetic workspace of a named size (``python -m ood_core synth``; generated here when missing):

- cifar10: 50,000 ID train, 10,000 ID test, 6 OOD sets x 10,000 (70,000 scored), D = 512, K = 10, 4 blocks;
- imagenet: 12,800 ID train (1% stratified), 50,000 ID test, 4 OOD sets x 10,000, D = 2,048, K = 1,000.

One *update* is what a slider move costs: the method's scores for the new value on the ID test set and every OOD set,
then AUROC, both FPR95 conventions and AUPR-In/Out per set. Before each timed update the score memo is cleared and
the method is scored at its default (the page's state before the move); fitted states and per-set prepared arrays
stay (they are computed once, and their one-time cost is measured separately). Two sets of moves per parameter:
*near the default* (±1, ±5, ±10 slider steps) and *full range* (9 values spanning the slider).

First use: with the workspace's derived cache entries (fits, KNN distances) deleted, a fresh process computes every
fitted state and KNN's distances (the train-derived statistics, timed on their own), then the full Compare table (all
methods at their defaults, adding every per-set preparation); a second fresh process then reaches the same table
from the cache. pytorch-ood 0.4 runs the same moves on the same arrays (its detectors + its OODMetrics) for the
methods both implement; the ratio is printed per method. Our side is timed twice: with the metrics as plain numbers
per set, which is what pytorch-ood's ``OODMetrics.compute`` returns (the like-for-like ratio), and with the page's
metrics table (a pandas DataFrame; ~0.1 ms more when warm, up to ~0.7 ms after an idle pause). A method without a
slider (MSP, Entropy, Mahalanobis, …) is timed as its scores and metrics from the cached arrays. Every anchor row is
the median of at least 9 runs per side, the sides alternating with the same slider value, each run after a 50 ms
pause (pytorch-ood's KNN, DICE, ViM and KL-Matching, which refit on every run and take up to a minute: once).

Under load (``--load N``): MSP, Energy, Entropy, ReAct and LINe updates timed on each numba threading layer (TBB,
OpenMP; one fresh process per layer and load, ``NUMBA_THREADING_LAYER``), idle and with N busy processes beside it
(oversubscribed cores, as on a classroom server), the layers alternating.

Usage: python benchmarks/bench_sliders.py [--size cifar10|imagenet] [--repeats 3] [--no-anchor] [--no-first-use]
[--quick] [--load N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core import jit
from ood_core import metrics as metrics_module
from ood_core import workspace as workspace_module
from ood_core.engine.cache import FeatureCache
from ood_core.inputs.synthetic import SIZES, register
from ood_core.metrics import metrics_table, set_metrics
from ood_core.scores import METHODS
from ood_core.scores.subspace import dimension
from ood_core.tables import default_settings
from ood_core.workspace import LoadedWorkspace, Workspace, load_workspace

REPO = Path(__file__).resolve().parent.parent
PAUSE = 0.05  # seconds between anchor runs, see anchor_times
FIRST_USE = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {repo!r})
from ood_core.workspace import Workspace, cached_workspace
from ood_core.tables import all_methods_table, default_settings
from ood_core.scores import METHODS
imported = time.perf_counter()
features = cached_workspace(Workspace({model!r}, {model!r}, {ood!r}))
loaded = time.perf_counter()
methods = default_settings(features)
for method, _ in methods:  # the train-derived statistics: every fitted state, then KNN's 200 nearest per scored row
    features.state(method)
features.scores(METHODS["knn"])
fitted = time.perf_counter()
table = all_methods_table(features, methods)
done = time.perf_counter()
print(f"{{imported - start:.2f}} {{loaded - imported:.2f}} {{fitted - loaded:.2f}} {{done - imported:.2f}} {{len(methods)}}")
"""


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def moves(param, near: bool, benchmark, blocks=()) -> list:
    """Slider values to move to: near the default (±1, ±5, ±10 steps) or across the whole range; for a block set,
    the deepest 1, 2, … blocks."""
    if param.kind == "blocks":
        return ["+".join(blocks[-n:]) for n in range(1, len(blocks) + 1)]
    default = param.default_for(benchmark)
    if near:
        values = [default + s * param.step for s in (-10, -5, -1, 1, 5, 10)]
        values = [min(max(v, param.low), param.high) for v in values]
    else:
        values = param.grid(9)
    cast = int if param.kind == "int" else float
    return sorted({cast(round(v, 6)) for v in values if cast(round(v, 6)) != default})


def as_table(method, scores) -> None:
    """The page's output: the metrics table (a DataFrame) of every set."""
    metrics_table({method.label: scores})


def as_dicts(method, scores) -> None:
    """The metrics as plain numbers per set, what pytorch-ood's ``OODMetrics.compute`` gives."""
    set_metrics(*scores)


def timed_update(
    features: LoadedWorkspace, method, params: dict, output=as_table
) -> float:
    """One move: the scores for ``params`` and their metrics, after the page at the defaults (for a method without
    a slider, ``params`` is empty and nothing comes before)."""
    workspace_module._scores.clear()
    if params:
        output(method, features.scores(method))  # the page before the move
    start = time.perf_counter()
    output(method, features.scores(method, params))
    return time.perf_counter() - start


def update_times(
    features: LoadedWorkspace, repeats: int, quick: bool = False
) -> dict[str, dict[str, float]]:
    results = {}
    for method in METHODS.values():
        numeric = [p for p in method.params if p.numeric or p.kind == "blocks"]
        if method.cost != "cache" or not numeric or features.unavailable(method):
            continue
        rows = {}
        for near in (True,) if quick else (True, False):
            times = [
                timed_update(features, method, {p.name: value})
                for p in numeric
                for value in moves(p, near, features.benchmark, features.blocks)[
                    2 : 4 if quick else None
                ]
                for _ in range(repeats)
            ]
            rows["near" if near else "range"] = statistics.median(times)
            rows.setdefault("max", 0.0)
            rows["max"] = max(rows["max"], max(times))
        results[method.label] = rows
        full_range = (
            f"   full range {rows['range'] * 1e3:7.1f} ms" if "range" in rows else ""
        )
        print(
            f"  {method.label:<12} near default {rows['near'] * 1e3:7.1f} ms{full_range}"
            f"   worst {rows['max'] * 1e3:7.1f} ms",
            flush=True,
        )
    return results


INTERVAL_METHODS = ("msp", "energy", "react", "line", "nap-energy")


def interval_costs(features: LoadedWorkspace, repeats: int) -> None:
    """What the uncertainty adds to one slider update: (a) the scores and the metrics as plain numbers, (b) the
    page's metrics table with DeLong's AUROC intervals (per set and for the mean), (c) (b) and the paired DeLong tests
    that colour a page's card deltas (each set and the mean against the method at its default), in one pass as the
    pages run them, and (d) the same tests one call each, as before. The four alternate, each after the score memo
    is cleared; medians."""
    from ood_core.metrics import paired_auroc, paired_auroc_per_set

    def cards(
        method, scores, reference
    ) -> None:  # as the pages' comparisons.per_set_differences
        metrics_table({method.label: scores})
        paired_auroc_per_set(scores, reference)

    def cards_set_by_set(
        method, scores, reference
    ) -> None:  # as the pages did before (one test per call)
        metrics_table({method.label: scores})
        for name in scores[1]:
            paired_auroc(scores, reference, [name])
        paired_auroc(scores, reference)

    print(
        "  uncertainty added to one slider update (median ms; (a) plain metrics, (b) + intervals, (c) + tests in "
        "one pass, as the pages run them; (d) the same tests set by set, as before):"
    )
    for name in INTERVAL_METHODS:
        method = METHODS[name]
        if features.unavailable(method):
            continue
        numeric = [p for p in method.params if p.numeric]
        values = moves(numeric[0], True, features.benchmark)[:4] if numeric else [None]
        times = {"a": [], "b": [], "c": [], "d": []}
        for _ in range(repeats):
            for value in values:
                params = {numeric[0].name: value} if numeric else {}
                reference = features.scores(method)
                for label, bucket in times.items():
                    workspace_module._scores.clear()
                    metrics_module._sorted.clear()  # no label reuses another's sorts or components
                    metrics_module._components.clear()
                    features.scores(
                        method
                    )  # the page before the move, its components known
                    paired_auroc_per_set(reference, reference)
                    start = time.perf_counter()
                    scores = features.scores(method, params)
                    if label == "a":
                        set_metrics(*scores)
                    elif label == "b":
                        metrics_table({method.label: scores})
                    elif label == "c":
                        cards(method, scores, reference)
                    else:
                        cards_set_by_set(method, scores, reference)
                    bucket.append(time.perf_counter() - start)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(
            f"    {method.label:<12} (a) {med['a']:6.1f}  (b) {med['b']:6.1f} (+{med['b'] - med['a']:.1f})  "
            f"(c) {med['c']:6.1f} (+{med['c'] - med['a']:.1f})  (d) {med['d']:6.1f} (+{med['d'] - med['a']:.1f})",
            flush=True,
        )


def metrics_time(features: LoadedWorkspace, repeats: int) -> float:
    id_scores, ood = features.scores(METHODS["energy"])
    times = []
    for _ in range(max(5, repeats)):
        start = time.perf_counter()
        set_metrics(id_scores, ood)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def drop_derived(cache: FeatureCache, model: str) -> None:
    """Delete the model's derived entries (fitted states, KNN's neighbours): a first use again."""
    for entry in cache.entries(verify=False):
        if entry.model.startswith(model) and entry.kind == "derived":
            cache.delete(entry.path)


def first_use(size, cache: FeatureCache) -> None:
    drop_derived(cache, size.model)
    code = FIRST_USE.format(repo=str(REPO), model=size.model, ood=tuple(size.ood_names))
    for label in (
        "first computation (nothing derived cached)",
        "fresh process, states from the cache",
    ):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        wall = time.perf_counter() - start
        imports, load, statistics_, table, count = out
        print(
            f"  {label}: {float(table):.1f} s to a full Compare table of {count} methods, of which "
            f"{float(load):.1f} s opening the workspace and {float(statistics_):.1f} s the train-derived statistics "
            f"(every fit, KNN's 200 nearest of every scored row) (+ {float(imports):.1f} s imports; {wall:.1f} s "
            "process wall)"
        )


# --- pytorch-ood, the speed anchor ----------------------------------------------------------------------------------


def anchor_times(features: LoadedWorkspace, repeats: int) -> None:
    import torch
    from pytorch_ood import detector as pood
    from pytorch_ood.metrics import OODMetrics

    torch.set_num_threads(2)
    sets = {"ID": features.id_test, **features.ood}
    h = {name: torch.from_numpy(np.array(f.penultimate)) for name, f in sets.items()}
    logits = {name: torch.from_numpy(np.array(f.logits)) for name, f in sets.items()}
    weight = torch.from_numpy(np.array(features.id_test["head/weight"], np.float32))
    bias = torch.from_numpy(np.array(features.id_test["head/bias"], np.float32))
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    head4 = torch.nn.Sequential(torch.nn.Flatten(), head).eval()
    train_h = torch.from_numpy(np.array(features.id_train.penultimate))
    train_y = torch.from_numpy(np.asarray(features.id_train.labels))
    train_logits = torch.from_numpy(np.array(features.id_train.logits))
    react_state = features.state(METHODS["react"])

    def batched(fn, x, size=2000):
        return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])

    def metrics(scores: dict) -> None:
        for name in features.ood:
            m = OODMetrics()
            s = torch.cat([scores["ID"], scores[name]])
            y = torch.cat(
                [
                    torch.zeros(len(scores["ID"]), dtype=torch.long),
                    -torch.ones(len(scores[name]), dtype=torch.long),
                ]
            )
            m.update(s, y)
            m.compute()

    def dice_scores(detector) -> dict:
        """pytorch-ood's DICE: a fit (the mask for this p), then scores in batches (it builds [B, K, D])."""
        detector.fit_features(train_h, train_y)
        return {n: batched(detector.predict_features, x, 500) for n, x in h.items()}

    fitted = {
        "mahalanobis": pood.Mahalanobis(None).fit_features(train_h, train_y),
        "rmds": pood.RMD(None).fit_features(train_h, train_y),
        "knn": None,
    }
    anchors = {
        "Energy": (
            "T",
            lambda v: {n: pood.EnergyBased.score(z, t=v) for n, z in logits.items()},
        ),
        "ReAct": (
            "p",
            lambda v: {
                n: batched(
                    pood.ReAct(
                        None, head, threshold=react_state.threshold(v)
                    ).predict_feature_maps,
                    x,
                )
                for n, x in h.items()
            },
        ),
        "DICE": ("p", lambda v: dice_scores(pood.DICE(None, weight, bias, p=v / 100))),
        **{
            f"ASH-{variant.upper()}": (
                "p",
                lambda v, variant=variant: {
                    n: batched(
                        pood.ASH(
                            None, head4, variant=f"ash-{variant}", percentile=v / 100
                        ).predict_feature_maps,
                        x[:, :, None, None],
                    )
                    for n, x in h.items()
                },
            )
            for variant in "pbs"
        },
        "KNN": (
            "k",
            lambda v: {
                n: pood.KNN(None, k=int(v))
                .fit_features(train_h, train_y)
                .predict_features(x)
                for n, x in h.items()
            },
        ),
        "Mahalanobis": (
            None,
            lambda v: {
                n: batched(fitted["mahalanobis"].predict_features, x)
                for n, x in h.items()
            },
        ),
        "MSP": (
            None,
            lambda v: {n: pood.MaxSoftmax.score(z) for n, z in logits.items()},
        ),
        "GEN": (
            "gamma",
            lambda v: {n: pood.GEN.score(z, gamma=v) for n, z in logits.items()},
        ),
        "Entropy": (
            None,
            lambda v: {n: pood.Entropy.score(z) for n, z in logits.items()},
        ),
        "KL-Matching": (
            None,
            lambda v: {
                n: pood.KLMatching(None).fit_logits(train_logits).predict_logits(z)
                for n, z in logits.items()
            },
        ),
        "SCALE": (
            "p",
            lambda v: {
                n: batched(
                    pood.SCALE(
                        torch.nn.Identity(), head4, v / 100
                    ).predict_feature_maps,
                    x[:, :, None, None],
                )
                for n, x in h.items()
            },
        ),
        "NCI": (
            "alpha",
            lambda v: {
                n: pood.NCI(None, head, alpha=v)
                .fit_features(train_h)
                .predict_features(x)
                for n, x in h.items()
            },
        ),
        "fDBD": (
            None,
            lambda v: {
                n: pood.fDBD(None, head).fit_features(train_h).predict_features(x)
                for n, x in h.items()
            },
        ),
        "ViM": (
            "share",
            lambda v: {
                n: pood.ViM(None, dimension(weight.shape[1], v), weight, bias)
                .fit_features(train_h, train_y)
                .predict_features(x)
                for n, x in h.items()
            },
        ),
        "RMDS": (
            None,
            lambda v: {
                n: batched(fitted["rmds"].predict_features, x) for n, x in h.items()
            },
        ),
    }
    energy = {n: s.detach().clone() for n, s in anchors["Energy"][1](1.0).items()}
    id_scores, ood_scores = features.scores(METHODS["energy"])
    theirs = statistics.median(
        _timed(lambda: metrics(energy)) for _ in range(max(5, repeats))
    )
    ours_metrics = statistics.median(
        _timed(lambda: metrics_table({"Energy": (id_scores, ood_scores)}))
        for _ in range(max(5, repeats))
    )
    print(
        f"\n  metrics alone, {len(features.ood)} sets: ours {ours_metrics * 1e3:.1f} ms, pytorch-ood's OODMetrics "
        f"{theirs * 1e3:.1f} ms; a method whose scoring costs next to nothing cannot be more than "
        f"{theirs / ours_metrics:.1f}x faster"
    )
    print(
        "\n  ours: the metrics as plain numbers per set, as pytorch-ood's OODMetrics gives them (like for like); "
        "ours (table): as the page's DataFrame\n"
        "  method        ours (ms)  ours, table (ms)  pytorch-ood (ms)   ratio  ratio, table   "
        "(the sides alternating, same value)"
    )
    for label, (param, run) in anchors.items():
        method = next(m for m in METHODS.values() if m.label == label)
        params = (
            {param: next(iter(moves(method.param(param), True, features.benchmark)))}
            if param
            else {}
        )
        # Runs that take milliseconds are noisy on 2 shared cores: at least 9 of them per side, the sides
        # alternating with the same value, so that they see the same moments of the machine, each after a pause
        # (torch's OpenMP threads and numba's spin for milliseconds after their work and would slow the other side;
        # in the app, moves are that far apart).
        count = 1 if label in ("KNN", "DICE", "ViM", "KL-Matching") else max(9, repeats)
        theirs, mine, table = [], [], []
        for run_index in range(max(9, repeats)):
            if run_index < count:
                time.sleep(PAUSE)
                theirs.append(_timed(lambda: metrics(run(params.get(param)))))  # noqa: B023 (called at once)
            time.sleep(PAUSE)
            mine.append(timed_update(features, method, params, as_dicts))
            time.sleep(PAUSE)
            table.append(timed_update(features, method, params, as_table))
        theirs, mine, table = map(statistics.median, (theirs, mine, table))
        print(
            f"  {label:<12} {mine * 1e3:9.1f}   {table * 1e3:15.1f}   {theirs * 1e3:15.1f}   {theirs / mine:6.1f}x"
            f"   {theirs / table:10.1f}x"
        )


# --- threading layers under load ------------------------------------------------------------------------------------

LOAD_METHODS = ("msp", "energy", "entropy", "react", "line")
LAYERS = ("tbb", "omp")


def layer_times(features: LoadedWorkspace, repeats: int) -> dict[str, float]:
    """Median update per method of ``LOAD_METHODS``: a slider move near the default, or (no slider) the scores and
    metrics from the cached arrays; each after a 50 ms pause, as a person's moves come."""
    times = {}
    for name in LOAD_METHODS:
        method = METHODS[name]
        numeric = [p for p in method.params if p.numeric]
        values = (
            [
                {p.name: v}
                for p in numeric[:1]
                for v in moves(p, True, features.benchmark)
            ]
            if numeric
            else [{}]
        )
        runs = []
        for _ in range(repeats):
            for params in values:
                time.sleep(PAUSE)
                runs.append(timed_update(features, method, params))
        times[method.label] = statistics.median(runs)
    return times


@contextmanager
def busy(processes: int):
    """``processes`` processes spinning on a core each, beside the benchmark."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(processes)
    ]
    try:
        time.sleep(1.0 if spinners else 0.0)  # let the scheduler see them
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def under_load(size_name: str, processes: int, repeats: int) -> None:
    """Each layer idle and beside ``processes`` busy processes, one fresh process per (layer, load)."""
    results: dict[tuple[str, int], dict[str, float]] = {}
    for load in (0, processes):
        for layer in LAYERS:
            env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
            with busy(load):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--size",
                        size_name,
                        "--repeats",
                        str(repeats),
                        "--layer-times",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
            line = out.strip().splitlines()[-1]
            used, *pairs = line.split()
            if used != layer:
                raise SystemExit(f"asked numba for {layer}, it ran on {used}")
            results[layer, load] = {
                label: float(ms) for label, ms in (p.split("=") for p in pairs)
            }
            print(
                f"  {layer:<4} beside {load} busy processes: {line.split(maxsplit=1)[1]}",
                flush=True,
            )
    print(f"  median update, ms (repeats {repeats}); ratio = omp / tbb")
    print(
        f"  {'method':<10}"
        + "".join(f"{f'{l} idle':>11}{f'{l} load {processes}':>13}" for l in LAYERS)
        + f"{'idle ratio':>12}{'load ratio':>12}"
    )
    for label in results["tbb", 0]:
        row = [
            results[layer, load][label] for layer in LAYERS for load in (0, processes)
        ]
        print(
            f"  {label:<10}"
            + "".join(
                f"{v:>11.1f}" if i % 2 == 0 else f"{v:>13.1f}"
                for i, v in enumerate(row)
            )
            + f"{row[2] / row[0]:>12.2f}{row[3] / row[1]:>12.2f}"
        )


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["cifar10", "imagenet"], default="cifar10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--no-first-use", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two moves near the default per parameter (ImageNet size, where one move can take seconds)",
    )
    parser.add_argument(
        "--intervals-only",
        action="store_true",
        help="only what the intervals and paired tests add to an update",
    )
    parser.add_argument(
        "--load",
        type=int,
        metavar="N",
        help="time MSP, Energy, Entropy, ReAct and LINe on each threading layer, idle and beside N busy processes",
    )
    parser.add_argument("--layer-times", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SIZES[args.size]
    cache = FeatureCache()
    register(args.size)
    start = time.perf_counter()
    workspace = Workspace(size.model, size.model, tuple(size.ood_names))
    features = load_workspace(workspace, cache)
    if (
        args.layer_times
    ):  # one run of --load: the layer numba used, then label=ms per method
        features.scores(
            METHODS["line"]
        )  # fits and prepared arrays first, as a page that is already open
        times = layer_times(features, args.repeats)
        print(jit.threading_layer(), *(f"{k}={v * 1e3:.2f}" for k, v in times.items()))
        return
    print(
        f"== {args.size}: workspace ready in {time.perf_counter() - start:.1f} s ({cache.root}); numba threading "
        f"layer {jit.threading_layer()} ({os.environ.get('NUMBA_THREADING_LAYER', 'default')}), "
        f"{os.cpu_count()} CPUs"
    )
    if args.load is not None:
        under_load(args.size, args.load, args.repeats)
        return
    if args.intervals_only:
        interval_costs(features, max(3, args.repeats))
        return
    if not args.no_first_use:
        first_use(size, cache)
    start = time.perf_counter()
    for method, _ in default_settings(features):
        began = time.perf_counter()
        features.scores(method)
        print(
            f"    {method.label:<12} fitted, prepared and scored at its defaults in "
            f"{time.perf_counter() - began:.1f} s",
            flush=True,
        )
    print(
        f"  this process: every fitted state and prepared array ready in {time.perf_counter() - start:.1f} s"
    )
    print(
        f"  metrics (AUROC, 2 x FPR95, AUPR-In/Out) for {len(features.ood)} sets: {metrics_time(features, args.repeats) * 1e3:.1f} ms"
    )
    print("  one slider update = scores of every set + every metric (median):")
    ours = update_times(features, args.repeats, args.quick)
    values = [r["near"] for r in ours.values()]
    print(
        f"  near the default: median over methods {statistics.median(values) * 1e3:.1f} ms, slowest {max(values) * 1e3:.1f} ms"
    )
    interval_costs(features, max(3, args.repeats))
    if not args.no_anchor:
        anchor_times(features, args.repeats)
    print(f"  peak resident memory of this process: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
