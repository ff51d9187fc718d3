"""Command line: ``python -m ood_core extract | evaluate | select-block | heatmap | fine-tune | list | cache``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from . import catalog
from .background import BackgroundSettings
from .block_selection import (
    JIGSAW_DEFAULT_N,
    jigsaw_base_rows,
    jigsaw_name,
    norm_ratio,
    select_block,
)
from .cache import FeatureCache
from .errors import OODLabError
from .evaluation import (
    accuracy,
    before_after,
    evaluate,
    heatmap_scores,
    workspace_features,
    workspace_sets,
)
from .extract import ExtractionSettings
from .finetuned import background_fine_tune
from .heatmap import DecoderSettings
from .metrics import metrics_table
from .models import LoadedModel
from .pipeline import Workspace, feature_set, heatmap_decoder, prepare_model
from .scores import METHODS, parse_method

DEMO = Workspace()
DEFAULT_METHODS = [name for name, method in METHODS.items() if not method.reinference]


def _workspace_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--ood",
        nargs="+",
        default=list(DEMO.ood_datasets),
        help="OOD datasets (default: all demo sets)",
    )


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


def _prepare(model: str, bars: _Bars) -> LoadedModel:
    loaded = prepare_model(model, bars.for_set(f"training {model} (epochs)"))
    bars.close()
    return loaded


def cmd_extract(args: argparse.Namespace) -> int:
    settings = ExtractionSettings(args.batch_size, args.device, args.amp, args.workers)
    workspace = Workspace(args.model, args.id_dataset, tuple(args.ood))
    targets = workspace_sets(workspace)  # fails on an unknown name before any work
    bars = _Bars()
    _prepare(args.model, bars)
    for name, split in targets:
        label = f"{name}:{split}" if split else name
        features = feature_set(
            args.model, name, split, settings=settings, progress=bars.for_set(label)
        )
        bars.close()
        for note in features.notes:
            print(f"warning: {note}", file=sys.stderr)
        skipped = features.meta.get("skipped", 0)
        suffix = f"  ({skipped} unreadable images skipped)" if skipped else ""
        print(f"{label:<22} {len(features):>7} rows  {features.root}{suffix}")
    return 0


def cmd_select_block(args: argparse.Namespace) -> int:
    bars = _Bars()
    _prepare(args.model, bars)
    id_name = args.id_dataset
    train = feature_set(
        args.model, id_name, "train", progress=bars.for_set(f"{id_name}:train")
    )
    jigsaw = feature_set(
        args.model,
        jigsaw_name(id_name, args.grid),
        "train",
        progress=bars.for_set(f"{id_name} jigsaw {args.grid}x{args.grid}"),
    )
    bars.close()
    ratios = norm_ratio(train, jigsaw, jigsaw_base_rows(jigsaw))
    chosen = select_block(ratios)
    print(
        f"NormRatio = mean_i FN_b(x_i) / FN_b(jigsaw_{args.grid}(x_i)) over {len(jigsaw)} {id_name} train images"
    )
    for block, value in ratios.items():
        print(f"  {block:<16} {value:8.4f}{'  <- selected' if block == chosen else ''}")
    print(f"selected block: {chosen}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    methods = [parse_method(spec) for spec in args.methods]
    bars = _Bars()
    model = _prepare(args.model, bars)
    for method, params in methods:  # fail on a bad parameter before any extraction
        method.validate(list(model.probes.blocks), params)
    workspace = Workspace(args.model, args.id_dataset, tuple(args.ood))
    features = workspace_features(
        workspace, progress=lambda s, d, t: bars.for_set(s)(d, t)
    )
    bars.close()
    table = evaluate(features, methods)
    print(
        f"model {args.model}, ID {args.id_dataset} (accuracy {accuracy(features.id_test):.2f}%), metrics in %"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return 0


def _print_table(title: str, table, csv: str | None) -> None:
    print(title)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if csv:
        table.to_csv(csv, index=False)
        print(f"wrote {csv}")


def cmd_heatmap(args: argparse.Namespace) -> int:
    bars = _Bars()
    _prepare(args.model, bars)
    workspace = Workspace(args.model, args.id_dataset, tuple(args.ood))
    features = workspace_features(
        workspace, progress=lambda s, d, t: bars.for_set(s)(d, t)
    )
    outlier_name = args.outliers or jigsaw_name(args.id_dataset, JIGSAW_DEFAULT_N)
    outliers = feature_set(
        args.model, outlier_name, progress=bars.for_set(outlier_name)
    )
    bars.close()
    if features.id_train is None:
        raise OODLabError(f"{args.id_dataset} has no train split to train a decoder on")
    epochs = tqdm(total=args.epochs, desc="decoder epochs", file=sys.stderr)

    def progress(epoch: int, total: int, train_loss: float, val_loss: float) -> None:
        epochs.update(epoch - epochs.n)
        epochs.set_postfix(train=f"{train_loss:.4f}", held_out=f"{val_loss:.4f}")

    decoder = heatmap_decoder(
        features.id_train,
        outliers,
        DecoderSettings(epochs=args.epochs),
        progress=progress,
    )
    epochs.close()
    history = decoder.history
    print(
        f"decoder: {history['id_samples']} ID + {history['oe_samples']} outlier-exposure images "
        f"({outlier_name}), best epoch {history['best_epoch']}/{history['epochs_run']}, "
        f"{history['seconds']:.1f} s to train (0 s when cached)"
    )
    table = metrics_table(
        {"Heatmap": heatmap_scores(features, decoder, exclude=outlier_name)}
    )
    _print_table("Heatmap-based OOD, metrics in %", table, args.csv)
    return 0


def cmd_fine_tune(args: argparse.Namespace) -> int:
    bars = _Bars()
    _prepare(args.model, bars)
    settings = BackgroundSettings(alpha=args.alpha, k=args.k, epochs=args.epochs)
    steps = tqdm(desc="fine-tuning (batches)", file=sys.stderr)

    def progress(step: int, total: int, loss: float) -> None:
        steps.total = total
        steps.update(step - steps.n)
        steps.set_postfix(loss=f"{loss:.4f}")

    name = background_fine_tune(args.model, args.id_dataset, settings, progress)
    steps.close()
    workspaces = [
        Workspace(model, args.id_dataset, tuple(args.ood))
        for model in (args.model, name)
    ]
    before, after = (
        workspace_features(ws, progress=lambda s, d, t: bars.for_set(s)(d, t))
        for ws in workspaces
    )
    bars.close()
    print(
        f"fine-tuned model: {name} (now in `list`), ID accuracy "
        f"{accuracy(before.id_test):.2f}% -> {accuracy(after.id_test):.2f}%"
    )
    table = before_after(before, after, [METHODS[m] for m in args.methods])
    _print_table("metrics in %, before and after", table, args.csv)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("models:")
    for spec in catalog.models().values():
        print(f"  {spec.name:<20} {spec.description}")
    print("datasets:")
    for spec in catalog.datasets().values():
        print(
            f"  {spec.name:<20} splits {'/'.join(spec.splits):<11} {spec.description}  [{spec.provenance}]"
        )
    print("methods (name:param=value,...):")
    for method in METHODS.values():
        params = ", ".join(f"{p.name}={p.default}" for p in method.params)
        print(
            f"  {method.name:<20} {method.label} ({method.paper.venue}){'  ' + params if params else ''}"
        )
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    cache = FeatureCache()
    if args.action == "list":
        entries = cache.entries()
        for e in entries:
            print(
                f"{e.model:<24} {e.dataset:<32} {e.rows if e.rows is not None else '?':>7} rows {e.bytes / 1e6:8.2f} MB  {e.created}  {e.status}"
            )
        print(f"{len(entries)} entries in {cache.root}")
    else:
        print(f"removed {cache.clear()} entries from {cache.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ood_core",
        description="OOD Lab: extract, cache and evaluate activation statistics.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    extract = sub.add_parser(
        "extract", help="extract and cache features of the ID splits and OOD sets"
    )
    _workspace_arguments(extract)
    extract.add_argument("--batch-size", type=int, default=256)
    extract.add_argument(
        "--device",
        default="auto",
        help="auto (cuda if available), cpu, cuda, cuda:1 ...",
    )
    extract.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    extract.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes"
    )
    extract.set_defaults(run=cmd_extract)
    evaluate_ = sub.add_parser(
        "evaluate", help="print the metrics table (extracts what is missing)"
    )
    _workspace_arguments(evaluate_)
    evaluate_.add_argument(
        "--methods",
        nargs="+",
        default=DEFAULT_METHODS,
        help="e.g. msp energy:T=2 nap-energy:lambda=0.4 react:p=90 (default: every method but ODIN, "
        "which re-runs the model)",
    )
    evaluate_.add_argument("--csv", help="also write the table to this CSV file")
    evaluate_.set_defaults(run=cmd_evaluate)
    select = sub.add_parser(
        "select-block",
        help="NormRatio per block on jigsaw pseudo-OOD and the chosen block",
    )
    select.add_argument("--model", default=DEMO.model)
    select.add_argument("--id", dest="id_dataset", default=DEMO.id_dataset)
    select.add_argument(
        "--grid",
        type=int,
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
        help="outlier-exposure dataset, left out of the metrics (default: <id>@jigsaw3, "
        "jigsaw-shuffled ID training images)",
    )
    heatmap.add_argument(
        "--epochs", type=int, default=DecoderSettings().epochs, help="at most"
    )
    heatmap.add_argument("--csv", help="also write the table to this CSV file")
    heatmap.set_defaults(run=cmd_heatmap)
    tune = sub.add_parser(
        "fine-tune",
        help="fine-tune with the Local Background loss, register the model, compare before/after",
    )
    _workspace_arguments(tune)
    defaults = BackgroundSettings()
    tune.add_argument("--alpha", type=float, default=defaults.alpha)
    tune.add_argument("--k", type=int, default=defaults.k)
    tune.add_argument("--epochs", type=int, default=defaults.epochs)
    tune.add_argument("--methods", nargs="+", default=["energy", "nap", "featurenorm"])
    tune.add_argument("--csv", help="also write the table to this CSV file")
    tune.set_defaults(run=cmd_fine_tune)
    sub.add_parser("list", help="list models, datasets and methods").set_defaults(
        run=cmd_list
    )
    cache = sub.add_parser("cache", help="inspect or clear the feature cache")
    cache.add_argument("action", choices=["list", "clear"])
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
