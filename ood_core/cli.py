"""Command line: ``python -m ood_core extract | evaluate | report | tune | select-block | heatmap | fine-tune | probes |
synth | list | cache``.

Every value is checked before any work; a bad one is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import reports, tuning
from .engine import distributed
from .engine.cache import FeatureCache
from .engine.extract import AMP_MODES, ExtractionSettings
from .engine.features import feature_set, model_named
from .errors import OODLabError
from .inputs import benchmarks, catalog
from .inputs.synthetic import SIZES, register
from .inputs.variants import JIGSAW_DEFAULT_N, PSEUDO_OOD, jigsaw_name
from .metrics import BOOTSTRAP_RESAMPLES
from .scores import METHODS, parse_method
from .scores.heatmap import DEFAULT_OUTLIERS, HEATMAP
from .tables import (
    all_methods_table,
    before_after,
    comparison_without,
    default_settings,
    evaluate,
    methods_markdown,
)
from .training.background import BackgroundSettings
from .training.finetune import (
    background_fine_tune,
    check_settings,
    delete_finetuned,
    last_map_positions,
)
from .workspace import LoadedWorkspace, Workspace, cached_workspace, load_workspace

DEMO = Workspace()
DEFAULT_METHODS = [name for name, method in METHODS.items() if method.cost == "cache"]
_TUNABLE = [name for name, method in METHODS.items() if tuning.tunable(method)]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad value in one line (exit code 2), without the usage block."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message}\n")


def _whole_number(text: str, least: int, wording: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {wording}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:<n>``; CUDA only when this machine has it."""
    if text in ("auto", "cpu"):
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r} (auto, cpu, cuda, cuda:1 ...)"
        ) from None
    if device.type != "cuda":
        raise argparse.ArgumentTypeError(
            f"unsupported device {text!r} (auto, cpu, cuda, cuda:1 ...)"
        )
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"--device {text}: this machine has no CUDA GPU (use auto or cpu)"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"--device {text}: only {torch.cuda.device_count()} GPU(s) here"
        )
    return text


def _writable_folder(folder: Path, text: str) -> None:
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"{text}: cannot write into {folder} (permission denied)"
        )


def output_path(text: str) -> str:
    """A file to write: not a folder, in a folder that exists and can be written (checked before any work)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} exists and cannot be overwritten")
    _writable_folder(path.resolve().parent, text)
    return text


def output_folder(text: str) -> Path:
    """A folder to write files into: an existing writable folder, or one that can be created in a writable one."""
    path = Path(text).resolve()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    _writable_folder(path if path.exists() else path.parent, text)
    return path


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} does not exist or is not a file")
    return text


def _workspace_arguments(
    parser: argparse.ArgumentParser, ood_default: Sequence[str] = DEMO.ood_datasets
) -> None:
    parser.add_argument(
        "--model", default=DEMO.model, help="registered model name (default: demo)"
    )
    parser.add_argument(
        "--id",
        dest="id_dataset",
        default=DEMO.id_dataset,
        help="ID dataset (default: digits)",
    )
    parser.add_argument(
        "--benchmark",
        choices=list(benchmarks.BENCHMARKS),
        help="a shipped protocol: its ID set and test OOD sets replace --id/--ood (missing files are listed)",
    )
    parser.add_argument(
        "--ood",
        nargs="*" if not ood_default else "+",
        default=list(ood_default),
        help=(
            "OOD datasets (default: all demo sets)"
            if ood_default
            else "test OOD sets to report regret on (default: none; tuning never looks at them)"
        ),
    )


def _method_arguments(parser: argparse.ArgumentParser) -> None:
    """``--methods`` (specs) and ``--config`` (tuned values), shared by evaluate and report."""
    parser.add_argument(
        "--methods",
        nargs="+",
        default=DEFAULT_METHODS,
        help="e.g. msp energy:T=2 nap-energy:lambda=0.4 react:p=90 (default: every method scored from the cache; "
        "ODIN re-runs the model and the heatmap decoder trains, so name them to include them)",
    )
    parser.add_argument(
        "--config",
        type=existing_file,
        help="tuned.json from `tune`: its values for every method given without explicit parameters",
    )


def _resamples_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resamples",
        type=non_negative_int,
        default=BOOTSTRAP_RESAMPLES,
        help=f"bootstrap resamples for the FPR95 and AUPR intervals (default {BOOTSTRAP_RESAMPLES}; "
        "0: none, with report)",
    )


def _csv_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", type=output_path, help="also write the table to this CSV file"
    )


def _workspace(args: argparse.Namespace) -> Workspace:
    """The workspace named by the arguments, checked (names exist, ID set has labels, OOD sets are not the ID set);
    ``--benchmark`` sets the ID and OOD sets after checking that its files are present."""
    if getattr(args, "benchmark", None):
        benchmark = benchmarks.get(args.benchmark)
        benchmarks.require(benchmark)
        args.id_dataset, args.ood = benchmark.id_dataset, list(benchmark.ood_datasets)
    workspace = Workspace(args.model, args.id_dataset, tuple(args.ood))
    catalog.get_model(workspace.model)
    if not catalog.get_dataset(workspace.id_dataset).in_distribution:
        raise OODLabError(
            f"'{workspace.id_dataset}' has no class labels, so it cannot be the ID set; "
            f"choose one of: {', '.join(n for n, s in catalog.datasets().items() if s.in_distribution)}"
        )
    workspace.sets()
    return workspace


class _Bars:
    """One tqdm bar per dataset, fed by ``progress(done, total)`` callbacks."""

    def __init__(self):
        self.bar: tqdm | None = None

    def for_set(self, label: str):
        def progress(done: int, total: int) -> None:
            if self.bar is None or self.bar.desc != label:
                self.close()
                self.bar = tqdm(
                    total=total, desc=label, unit="img", file=sys.stderr, leave=False
                )
            self.bar.update(done - self.bar.n)

        return progress

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _prepare(model: str, bars: _Bars):
    loaded = model_named(model, bars.for_set(f"training {model} (epochs)"))
    bars.close()
    return loaded


def _load(workspace: Workspace, bars: _Bars) -> LoadedWorkspace:
    features = load_workspace(workspace, progress=lambda s, d, t: bars.for_set(s)(d, t))
    bars.close()
    for f in [
        features.id_test,
        features.id_train,
        features.jigsaw,
        *features.ood.values(),
    ]:
        for note in f.notes if f is not None else []:
            print(f"warning: {note}", file=sys.stderr)
    return features


def _print_table(title: str, table, csv: str | None) -> None:
    print(title)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if csv:
        table.to_csv(csv, index=False)
        print(f"wrote {csv}")


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract every set of the workspace; under ``torchrun`` each rank extracts a shard (``engine.distributed``)
    and only rank 0 reports."""
    settings = ExtractionSettings(args.batch_size, args.device, args.amp, args.workers)
    if args.float16_stats:
        settings = dataclasses.replace(settings, float16_stats=True)
    workspace = _workspace(args)
    targets = workspace.sets()
    ranks = distributed.launched()
    leader = ranks is None or ranks.leader
    bars = _Bars()
    _prepare(args.model, bars)
    for name, split in targets:
        label = f"{name}:{split}" if split else name
        features = feature_set(
            args.model,
            name,
            split,
            settings=settings,
            progress=bars.for_set(label) if leader else None,
        )
        bars.close()
        if not leader:
            continue
        for note in features.notes:
            print(f"warning: {note}", file=sys.stderr)
        skipped = features.meta.get("skipped", 0)
        suffix = f"  ({skipped} unreadable images skipped)" if skipped else ""
        print(f"{label:<22} {len(features):>7} rows  {features.root}{suffix}")
    distributed.leave()
    if leader and args.statistics:
        # read back from the cache, never extracted again (under torchrun the other ranks are gone)
        features = cached_workspace(workspace)
        if (
            features is None
        ):  # e.g. --float16-stats entries, which the app reads only with OOD_LAB_FLOAT16_STATS=1
            print(
                "train statistics not stored: the app does not read these entries as they are; it fits the "
                "statistics on first use"
            )
        else:
            _statistics(features)
    return 0


def _statistics(features: LoadedWorkspace) -> None:
    """Fit and store every default method's train statistics (class means, covariances, thresholds, KNN's
    nearest neighbours of every scored row) and score the workspace once, so that the app's first Compare table
    reads them instead of computing them (and every kernel it runs is compiled and cached)."""
    start = time.perf_counter()
    methods = default_settings(features)  # the pages say why one is left out
    bar = tqdm(
        total=len(methods),
        desc="train statistics",
        unit="method",
        file=sys.stderr,
        leave=False,
    )

    def progress(done: int, total: int, label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(done - bar.n)

    with bar:
        all_methods_table(features, methods, progress)
    print(
        f"train statistics of {len(methods)} methods stored in {time.perf_counter() - start:.1f} s "
        "(the app's tables read them; --no-statistics skips this)"
    )


def cmd_select_block(args: argparse.Namespace) -> int:
    bars = _Bars()
    workspace = Workspace(args.model, args.id_dataset, ())
    _workspace(argparse.Namespace(model=args.model, id_dataset=args.id_dataset, ood=[]))
    _prepare(args.model, bars)
    train = feature_set(
        args.model,
        args.id_dataset,
        "train",
        progress=bars.for_set(f"{args.id_dataset}:train"),
    )
    jigsaw = feature_set(
        args.model,
        jigsaw_name(args.id_dataset, args.grid),
        "train",
        progress=bars.for_set(f"{args.id_dataset} jigsaw {args.grid}x{args.grid}"),
    )
    test = feature_set(
        args.model,
        args.id_dataset,
        "test",
        progress=bars.for_set(f"{args.id_dataset}:test"),
    )
    bars.close()
    features = LoadedWorkspace(
        test, train, {}, jigsaw, model=workspace.model, id_dataset=workspace.id_dataset
    )
    ratios = features.normratio(jigsaw)
    chosen = ratios.idxmax()
    print(
        f"NormRatio = mean_i FN_b(x_i) / FN_b(jigsaw_{args.grid}(x_i)) over {len(jigsaw)} {args.id_dataset} "
        "train images"
    )
    for block, value in ratios.items():
        print(f"  {block:<16} {value:8.4f}{'  <- selected' if block == chosen else ''}")
    print(f"selected block: {chosen}")
    return 0


def _available(
    features: LoadedWorkspace, methods: list, explicit: bool, doing: str
) -> list:
    """The (method, params) pairs the workspace can score: a method the user named that cannot is an error, one
    taken by default is left out with a note."""
    kept = []
    for method, params in methods:
        reason = features.unavailable(method, params)
        if reason and explicit:
            raise OODLabError(f"{method.label} cannot {doing}: {reason}")
        if reason:
            print(f"note: {method.label} left out: {reason}", file=sys.stderr)
        else:
            kept.append((method, params))
    return kept


def _accuracy_line(features: LoadedWorkspace) -> str:
    return f"accuracy {features.accuracy:.2f}%"


def _scored(args: argparse.Namespace) -> tuple[LoadedWorkspace, list]:
    """The workspace's features and the (method, params) pairs to score: parameters checked before any
    extraction, tuned values from ``--config`` for methods given without parameters (their validation ID rows
    leave the ID test set), methods the workspace cannot score left out (an error when named explicitly)."""
    methods = [parse_method(spec) for spec in args.methods]
    explicit = args.methods != DEFAULT_METHODS
    workspace = _workspace(args)
    bars = _Bars()
    model = _prepare(args.model, bars)
    for method, params in methods:  # fail on a bad parameter before any extraction
        method.validate(list(model.probes.blocks), params)
    features = _load(workspace, bars)
    if args.config:
        tuned = tuning.load(args.config, features)
        features = tuned.testing(features)
        methods = [(m, p or tuned.values.get(m.name, {})) for m, p in methods]
        print(
            f"tuned values from {args.config} ({tuned.protocol.describe()}); its validation ID rows are "
            "left out of the ID test set",
            file=sys.stderr,
        )
    return features, _available(features, methods, explicit, "score this workspace")


def _with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """Each metric with its interval columns folded into one ``lo–hi`` column beside it (for printing)."""
    shown = table.copy()
    for metric in ("AUROC", "FPR95", "AUPR-In", "AUPR-Out"):
        low, high = f"{metric} low", f"{metric} high"
        if low in shown:
            at = shown.columns.get_loc(metric) + 1
            shown.insert(
                at,
                f"{metric} 95% CI",
                [f"{a:.2f}–{b:.2f}" for a, b in zip(shown.pop(low), shown.pop(high))],
            )
    return shown


def cmd_evaluate(args: argparse.Namespace) -> int:
    features, methods = _scored(args)
    table = evaluate(features, methods, args.resamples if args.ci else 0)
    print(
        f"model {args.model}, ID {args.id_dataset} ({_accuracy_line(features)}), metrics in %"
        + (
            f"; 95% intervals: AUROC DeLong, FPR95/AUPR stratified bootstrap ({args.resamples} resamples)"
            if args.ci
            else ""
        )
    )
    shown = (
        _with_intervals(table)
        if args.ci
        else table.drop(columns=["AUROC low", "AUROC high"])
    )
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """A benchmark report: per-set metrics, near/far means, Markdown on stdout and md/csv/tex/json files."""
    benchmark = benchmarks.get(args.benchmark)
    features, methods = _scored(args)
    convention = args.fpr or reports.default_convention(benchmark)
    report = reports.build(features, benchmark, methods, convention, args.resamples)
    print(reports.markdown(report))
    for path in reports.save(report, args.out or reports.folder()):
        print(f"wrote {path}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    protocol = (
        tuning.parse_protocol(args.val, args.val_id, args.val_fraction, args.seed)
        if args.val is not None
        else None
    )
    methods = [_tunable(name) for name in args.methods]
    workspace = _workspace(args)
    bars = _Bars()
    _prepare(args.model, bars)
    features = _load(workspace, bars)
    if protocol is None:
        protocol = tuning.default_protocol(
            features, args.val_id, args.val_fraction, args.seed
        )
        _, fallback = tuning.default_sets(features)
        if fallback:
            print(fallback)
    explicit = args.methods != _TUNABLE
    methods = [
        m
        for m, _ in _available(
            features, [(m, {}) for m in methods], explicit, "be tuned here"
        )
    ]
    found = tuning.split(
        features, protocol, progress=lambda s, d, t: bars.for_set(s)(d, t)
    )
    bars.close()
    validation = found.validation
    print(
        f"validation: {len(validation.id_test)} ID images, "
        + ", ".join(f"{name} ({len(f)})" for name, f in validation.ood.items())
        + f"; objective {args.objective}"
        + (
            f" with ID accuracy >= {args.min_accuracy}%"
            if args.objective == "auroc@acc"
            else ""
        )
    )
    results = []
    for method in methods:
        points = tqdm(desc=method.name, unit="point", file=sys.stderr, leave=False)
        result = tuning.search(
            validation,
            method,
            args.objective,
            args.min_accuracy,
            args.points,
            partial(_advance, points),
        )
        points.close()
        results.append(result)
        sign = -1 if args.objective == "fpr95" else 1
        print(
            f"  {method.name:<12} {tuning.described(result.chosen):<40} validation {sign * result.value:6.2f} "
            f"(defaults {sign * result.default_value:6.2f}); {result.strategy}, {len(result.evaluated)} points, "
            f"{result.seconds:.1f} s"
        )
        print(f"  {'':<12} {result.reason}")
        if result.unreliable:
            print(
                f"  {'':<12} warning: the validation sets disagree on how to rank {method.label}'s candidates "
                f"(proxy agreement {result.agreement:+.2f}): the proxy is unreliable for this method"
            )
    path = tuning.save(args.out, features, protocol, results)
    if found.test is not None:
        table = tuning.regret_table(found, results)
        _print_table(
            "test sets (never used for the choice): mean AUROC/FPR95 in %, regret = test-best − tuned AUROC",
            table.drop(columns=["search", "seconds", "points"]),
            None,
        )
    print(
        f"wrote {path}; reuse it with: python -m ood_core evaluate --model {args.model} --id {args.id_dataset} "
        f"--ood ... --config {path}"
    )
    return 0


def _advance(bar: tqdm, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def _tunable(name: str):
    if name not in METHODS:
        raise OODLabError(f"unknown method {name}; choose from: {', '.join(METHODS)}")
    if not tuning.tunable(METHODS[name]):
        raise OODLabError(
            f"{name} has nothing to tune from the cache (choose from: "
            f"{', '.join(n for n, m in METHODS.items() if tuning.tunable(m))})"
        )
    return METHODS[name]


def cmd_heatmap(args: argparse.Namespace) -> int:
    workspace = _workspace(args)
    outliers = args.outliers or DEFAULT_OUTLIERS
    outlier_name = (
        f"{args.id_dataset}{outliers}" if outliers.startswith("@") else outliers
    )
    catalog.get_dataset(outlier_name)
    bars = _Bars()
    _prepare(args.model, bars)
    features = _load(workspace, bars)
    if features.id_train is None:
        raise OODLabError(f"{args.id_dataset} has no train split to train a decoder on")
    epochs = tqdm(total=args.epochs, desc="decoder epochs", file=sys.stderr)

    def progress(epoch: int, total: int, train_loss: float, val_loss: float) -> None:
        epochs.update(epoch - epochs.n)
        epochs.set_postfix(train=f"{train_loss:.4f}", held_out=f"{val_loss:.4f}")

    params = {"outliers": outliers, "epochs": args.epochs}
    state = features.state(HEATMAP, params, progress=progress)
    epochs.close()
    history = state.history
    print(
        f"decoder: {history['id_samples']} ID + {history['oe_samples']} outlier-exposure images "
        f"({outlier_name}), best epoch {history['best_epoch']}/{history['epochs_run']}, "
        f"{history['seconds']:.1f} s to train (0 s when cached)"
    )
    table = comparison_without(features, [(HEATMAP, params)], outlier_name)
    table["method"] = "Heatmap"
    _print_table("Heatmap-based OOD, metrics in %", table, args.csv)
    return 0


def cmd_fine_tune(args: argparse.Namespace) -> int:
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise OODLabError(
            f"unknown method {', '.join(unknown)}; choose from: {', '.join(METHODS)}"
        )
    workspace = _workspace(args)
    settings = BackgroundSettings(alpha=args.alpha, k=args.k, epochs=args.epochs)
    bars = _Bars()
    _prepare(args.model, bars)
    check_settings(settings, last_map_positions(args.model))
    steps = tqdm(desc="fine-tuning (batches)", file=sys.stderr)

    def progress(step: int, total: int, loss: float) -> None:
        steps.total = total
        steps.update(step - steps.n)
        steps.set_postfix(loss=f"{loss:.4f}")

    name = background_fine_tune(args.model, args.id_dataset, settings, progress)
    steps.close()
    before, after = (
        _load(Workspace(model, workspace.id_dataset, workspace.ood_datasets), bars)
        for model in (args.model, name)
    )
    print(
        f"fine-tuned model: {name} (now in `list`), ID accuracy {before.accuracy:.2f}% -> {after.accuracy:.2f}%"
    )
    table = before_after(before, after, [METHODS[m] for m in args.methods])
    _print_table("metrics in %, before and after", table, args.csv)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(methods_markdown())
        return 0
    print("models:")
    for spec in catalog.models().values():
        print(f"  {spec.name:<20} {spec.description}")
    print("datasets:")
    for spec in catalog.datasets().values():
        print(
            f"  {spec.name:<20} splits {'/'.join(spec.splits):<11} {spec.description}  [{spec.provenance}]"
        )
    problems = catalog.problems()
    if problems:
        print("broken registry entries (left out):")
        for problem in problems:
            print(f"  {problem}")
    print("methods (name:param=value,...):")
    for method in METHODS.values():
        params = ", ".join(f"{p.name}={p.default}" for p in method.params)
        print(
            f"  {method.name:<20} {method.label} ({method.paper.venue}){'  ' + params if params else ''}"
        )
    return 0


def cmd_probes(args: argparse.Namespace) -> int:
    """Where the model will be probed (one dry forward pass; nothing is extracted)."""
    model = _prepare(args.model, _Bars())
    probes = model.probes
    print(
        f"model {args.model}: {len(probes.blocks)} probes ({probes.kind}); head {probes.head} "
        f"({probes.penultimate} → {probes.classes}); statistics of ReLU(map) per channel"
    )
    print(pd.DataFrame(probes.table()).to_string(index=False))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """What this install runs on: Python environment, numba's threading layer, BLAS, torch threads, device."""
    from .doctor import facts

    for name, value in facts().items():
        print(f"{name:<12} {value}")
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    """Compile every kernel the app runs into numba's on-disk cache (``ood_core.warmup``), on a synthetic workspace
    in a throwaway cache folder; one warm-up at a time per user (a second waits, then only loads the kernels)."""
    from filelock import FileLock

    from .warmup import warm

    if args.nice and hasattr(os, "nice"):  # POSIX
        os.nice(args.nice)
    start = time.perf_counter()
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    lock = Path(tempfile.gettempdir()) / f"ood-lab-warm-{user}.lock"
    cache = os.environ.get("OOD_LAB_CACHE_DIR")
    with (
        FileLock(lock),
        tempfile.TemporaryDirectory(prefix="ood-lab-warm-") as root,
    ):
        os.environ["OOD_LAB_CACHE_DIR"] = root  # the user's cache is not touched
        try:
            count = warm()
        finally:
            if cache is None:
                os.environ.pop("OOD_LAB_CACHE_DIR", None)
            else:
                os.environ["OOD_LAB_CACHE_DIR"] = cache
    print(
        f"kernels of {count} methods compiled or loaded from numba's cache in {time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    size = SIZES[args.size]
    register(args.size, args.seed)
    workspace = Workspace(size.model, size.model, tuple(size.ood_names))
    bars = _Bars()
    features = _load(workspace, bars)
    sets = [features.id_test, features.id_train, *features.ood.values()]
    megabytes = (
        sum(sum(spec["bytes"] for spec in f.meta["files"].values()) for f in sets) / 1e6
    )
    print(
        f"synthetic workspace {size.model}: model {size.model}, ID {size.model} "
        f"({size.train:,} train / {size.test:,} test), OOD {', '.join(size.ood_names)}; {megabytes:,.0f} MB cached"
    )
    if args.statistics:
        _statistics(features)
    print(
        f"open it in the app (pick model {size.model} in the sidebar) or: python -m ood_core evaluate "
        f"--model {size.model} --id {size.model} --ood {' '.join(size.ood_names)}"
    )
    return 0


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_cache(args: argparse.Namespace) -> int:
    cache = FeatureCache()
    if args.action == "list":
        entries = cache.entries()
        for e in entries:
            rows = e.rows if e.rows is not None else "?"
            print(
                f"{e.model:<24} {e.dataset:<40} {e.kind:<8} {rows:>7} rows {e.bytes / 1e6:8.2f} MB  "
                f"{e.created}  {e.status}"
            )
        print(f"{len(entries)} entries in {cache.root}")
        tuned = (
            sorted(catalog.finetuned_folder().glob("*.pt"))
            if catalog.finetuned_folder().is_dir()
            else []
        )
        for weights in tuned:
            print(
                f"fine-tuned model {weights.stem}  {weights.stat().st_size / 1e6:.2f} MB  {weights}"
            )
        return 0
    if args.action == "delete":
        if not args.names:
            raise OODLabError(
                "cache delete needs entry paths (see `cache list`) or fine-tuned model names"
            )
        for name in args.names:
            if (catalog.finetuned_folder() / f"{name}.pt").is_file():
                delete_finetuned(name)
                print(f"deleted fine-tuned model {name}")
            else:
                path = Path(name) if Path(name).is_absolute() else cache.root / name
                cache.delete(path)
                print(f"deleted {path}")
        return 0
    if not cache.root.exists():
        print(f"nothing to clear: {cache.root} does not exist")
        return 0
    if not cache.marked:
        raise OODLabError(
            f"{cache.root} is not an OOD Lab cache (it has no .ood-lab-cache marker); nothing was deleted"
        )
    entries, debris = cache.entries(verify=False), cache.debris()
    if not entries and not debris:
        print(f"the cache {cache.root} holds no entries")
        return 0
    print(f"will delete from {cache.root}:")
    for e in entries:
        print(f"  {e.model}/{e.dataset}  ({e.bytes / 1e6:.2f} MB)")
    if debris:
        print(f"  and {len(debris)} leftover temp/lock files of interrupted builds")
    if not args.yes and not _confirm(f"delete {len(entries)} entries?"):
        print("nothing deleted")
        return 1
    print(
        f"removed {cache.clear()} entries from {cache.root} (model weights in models/ kept)"
    )
    return 0


def _statistics_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-statistics",
        dest="statistics",
        action="store_false",
        help="skip fitting the default methods' train statistics after extracting (the app then fits them on "
        "first use, which takes tens of seconds at benchmark size)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ood_core",
        description="OOD Lab: extract, cache and evaluate activation statistics.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    extract = sub.add_parser(
        "extract", help="extract and cache features of the ID splits and OOD sets"
    )
    _workspace_arguments(extract)
    extract.add_argument("--batch-size", type=positive_int, default=256)
    extract.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto (cuda if available), cpu, cuda, cuda:1",
    )
    extract.add_argument(
        "--amp",
        nargs="?",
        const="fp16",
        default="off",
        choices=AMP_MODES,
        help="autocast: fp16 (CUDA; the default of a bare --amp) or bf16 (CUDA or CPU); statistics stay float32",
    )
    extract.add_argument(
        "--float16-stats",
        action="store_true",
        help="store block statistics as float16 (half the cache; see benchmarks/bench_float16.py for the effect "
        "on every metric); set OOD_LAB_FLOAT16_STATS=1 to extract and read such entries everywhere (app, evaluate)",
    )
    extract.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="DataLoader worker processes",
    )
    _statistics_argument(extract)
    extract.set_defaults(run=cmd_extract)
    evaluate_ = sub.add_parser(
        "evaluate", help="print the metrics table (extracts what is missing)"
    )
    _workspace_arguments(evaluate_)
    _method_arguments(evaluate_)
    _csv_argument(evaluate_)
    evaluate_.add_argument(
        "--ci",
        action="store_true",
        help="95%% intervals of every metric (AUROC: DeLong; FPR95 and AUPR: stratified bootstrap)",
    )
    _resamples_argument(evaluate_)
    evaluate_.set_defaults(run=cmd_evaluate)
    report = sub.add_parser(
        "report",
        help="a benchmark report (per-set FPR95/AUROC/AUPR, near and far means) as Markdown, CSV and LaTeX",
    )
    _workspace_arguments(report)
    report.set_defaults(benchmark="demo")
    _method_arguments(report)
    report.add_argument(
        "--fpr",
        choices=["id", "ood"],
        help="FPR95 convention: id = OOD accepted at 95%% ID kept (seed papers); ood = ID rejected at 95%% OOD "
        "caught (OpenOOD). Default: ood for openood-* benchmarks, id for the demo",
    )
    report.add_argument(
        "--out",
        type=output_folder,
        default=None,
        help="folder for the report files (default: <cache dir>/reports, listed on the Reports page)",
    )
    _resamples_argument(report)
    report.set_defaults(run=cmd_report)
    tune = sub.add_parser(
        "tune",
        help="choose hyperparameters on validation data (pseudo-OOD or a validation set), never the test OOD sets",
    )
    _workspace_arguments(tune, ood_default=())
    tune.add_argument(
        "--methods",
        nargs="+",
        default=_TUNABLE,
        help="methods to tune (default: every tunable method scored from the cache)",
    )
    tune.add_argument(
        "--val",
        default=None,
        help="validation OOD: pseudo:<variant>[,...] (variants of ID train images: "
        f"{', '.join(PSEUDO_OOD)}) and/or set:<dataset>[,...], joined by ';' (default: the benchmark's validation "
        "OOD set where the ID set has one, as OpenOOD: the demo's val-images, c10-val-tin, ...; every pseudo-OOD "
        "variant otherwise)",
    )
    tune.add_argument(
        "--val-id",
        choices=["test", "train"],
        default="test",
        help="split the validation ID images are held out of (default: test, as OpenOOD)",
    )
    tune.add_argument(
        "--val-fraction",
        type=finite_float,
        default=0.2,
        help="share of that split held out (default 0.2)",
    )
    tune.add_argument("--seed", type=non_negative_int, default=0)
    tune.add_argument(
        "--objective",
        choices=list(tuning.OBJECTIVES),
        default=tuning.DEFAULT_OBJECTIVE,
        help="; ".join(f"{k}: {v}" for k, v in tuning.OBJECTIVE_LABELS.items())
        + f" (default {tuning.DEFAULT_OBJECTIVE}). The best point replaces the default only when its validation "
        "gain is significant (paired test, 5%%)",
    )
    tune.add_argument(
        "--min-accuracy",
        type=finite_float,
        default=0.0,
        help="for --objective auroc@acc: the ID accuracy (%%) a candidate must keep",
    )
    tune.add_argument(
        "--points",
        type=positive_int,
        default=11,
        help="values tried per numeric parameter (default 11)",
    )
    tune.add_argument(
        "--out", type=output_path, default="tuned.json", help="default: tuned.json"
    )
    tune.set_defaults(run=cmd_tune)
    select = sub.add_parser(
        "select-block",
        help="NormRatio per block on jigsaw pseudo-OOD and the chosen block",
    )
    select.add_argument("--model", default=DEMO.model)
    select.add_argument("--id", dest="id_dataset", default=DEMO.id_dataset)
    select.add_argument(
        "--grid",
        type=positive_int,
        default=JIGSAW_DEFAULT_N,
        help="jigsaw grid size n (default 3)",
    )
    select.set_defaults(run=cmd_select_block)
    heatmap = sub.add_parser(
        "heatmap",
        help="train (once, cached) the Heatmap-based OOD decoder and print its metrics",
    )
    _workspace_arguments(heatmap)
    heatmap.add_argument(
        "--outliers",
        help="outlier-exposure dataset, left out of the metrics (default: <id>@jigsaw3, jigsaw-shuffled ID "
        "training images)",
    )
    heatmap.add_argument(
        "--epochs",
        type=positive_int,
        default=HEATMAP.param("epochs").default,
        help="at most",
    )
    _csv_argument(heatmap)
    heatmap.set_defaults(run=cmd_heatmap)
    finetune = sub.add_parser(
        "fine-tune",
        help="fine-tune with the Local Background loss, register the model, compare before/after",
    )
    _workspace_arguments(finetune)
    defaults = BackgroundSettings()
    finetune.add_argument("--alpha", type=finite_float, default=defaults.alpha)
    finetune.add_argument("--k", type=positive_int, default=defaults.k)
    finetune.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    finetune.add_argument(
        "--methods", nargs="+", default=["energy", "nap", "featurenorm"]
    )
    _csv_argument(finetune)
    finetune.set_defaults(run=cmd_fine_tune)
    synth = sub.add_parser(
        "synth",
        help="generate a synthetic workspace of a benchmark's size (cache entries, no images)",
    )
    synth.add_argument("--size", choices=list(SIZES), default="cifar10")
    synth.add_argument("--seed", type=non_negative_int, default=0)
    _statistics_argument(synth)
    synth.set_defaults(run=cmd_synth)
    probes = sub.add_parser(
        "probes",
        help="where a model is probed: each map's name, what it reads, layout and shape (no extraction)",
    )
    probes.add_argument("--model", default=DEMO.model)
    probes.set_defaults(run=cmd_probes)
    doctor = sub.add_parser(
        "doctor",
        help="what this install runs on: environment, numba's threading layer, BLAS, torch threads, device",
    )
    doctor.set_defaults(run=cmd_doctor)
    warm_ = sub.add_parser(
        "warm",
        help="compile every kernel the app runs into numba's cache (the app does this in the background at start)",
    )
    warm_.add_argument(
        "--nice",
        type=non_negative_int,
        default=0,
        help="lower this process's priority by this much (the app's background warm-up uses 10)",
    )
    warm_.set_defaults(run=cmd_warm)
    listing = sub.add_parser("list", help="list models, datasets and methods")
    listing.add_argument(
        "--markdown",
        action="store_true",
        help="print the methods table as Markdown (README)",
    )
    listing.set_defaults(run=cmd_list)
    cache = sub.add_parser(
        "cache", help="inspect, delete from or clear the feature cache"
    )
    cache.add_argument("action", choices=["list", "delete", "clear"])
    cache.add_argument(
        "names",
        nargs="*",
        help="delete: entry paths (as `cache list` shows) or fine-tuned models",
    )
    cache.add_argument("--yes", action="store_true", help="clear without asking")
    cache.set_defaults(run=cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except OODLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no partial cache entry was kept", file=sys.stderr)
        return 130
