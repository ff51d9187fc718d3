"""Command line: ``python -m ood_core extract | evaluate | list | cache``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from . import catalog
from .block_selection import (
    JIGSAW_DEFAULT_N,
    jigsaw_base_rows,
    jigsaw_name,
    norm_ratio,
    select_block,
)
from .cache import FeatureCache
from .errors import OODLabError
from .evaluation import accuracy, evaluate, workspace_features, workspace_sets
from .extract import ExtractionSettings
from .models import LoadedModel
from .pipeline import Workspace, feature_set, prepare_model
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
