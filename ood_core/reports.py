"""Benchmark reports in the formats people publish: per-set FPR95/AUROC/AUPR, near- and far-OOD means, written as
Markdown, CSV and LaTeX.

Near/far summaries are unweighted means of the per-set metrics (OpenOOD's ``np.mean`` over sets). FPR95 is labelled
with its convention everywhere (``metrics.FPR95_CONVENTIONS``): ``id`` — the share of OOD accepted at 95 % of ID kept
(the seed papers, ODIN); ``ood`` — the share of ID rejected at 95 % of OOD caught (OpenOOD, pytorch-ood). A report
on an OpenOOD benchmark defaults to ``ood`` so that its numbers compare with OpenOOD's tables; the demo's to ``id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .inputs import config
from .inputs.benchmarks import Benchmark
from .metrics import metrics_table
from .scores.method import Method
from .tables import method_label
from .workspace import LoadedWorkspace

FPR_LABELS = {
    "id": "FPR95 (ID+: OOD accepted at 95% ID kept)",
    "ood": "FPR95 (OOD+: ID rejected at 95% OOD caught)",
}
COLUMNS = ("FPR95", "AUROC", "AUPR-In", "AUPR-Out")


def folder() -> Path:
    """Where reports are saved by default and listed by the Reports page: ``<cache dir>/reports``."""
    return config.cache_dir() / "reports"


def default_convention(benchmark: Benchmark) -> str:
    return "ood" if benchmark.name.startswith("openood-") else "id"


@dataclass(frozen=True)
class Report:
    """One report: which benchmark, model and FPR95 convention, and the tidy table (method, group, ood_set,
    metrics in %; group ``near``/``far``, summary rows with ``ood_set`` = ``near mean`` / ``far mean``)."""

    benchmark: str
    model: str
    convention: str
    table: pd.DataFrame
    accuracy: float

    def wide(self) -> pd.DataFrame:
        """One row per method; per set FPR95 and AUROC, then near and far means (the papers' layout)."""
        rows = {}
        for (method, ood_set), row in self.table.set_index(
            ["method", "ood_set"]
        ).iterrows():
            for metric in ("FPR95", "AUROC"):
                rows.setdefault(method, {})[f"{ood_set} {metric}"] = row[metric]
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def build(
    features: LoadedWorkspace,
    benchmark: Benchmark,
    methods: Sequence[tuple[Method, dict]],
    convention: str,
) -> Report:
    """Score every method on every test OOD set of ``benchmark``; add the near/far means."""
    groups = benchmark.groups()
    per_set = metrics_table(
        {method_label(m, p): features.scores(m, p) for m, p in methods},
        mean=False,
        fpr_convention=convention,
    )
    group_of = {name: group for group, names in groups.items() for name in names}
    per_set.insert(1, "group", per_set["ood_set"].map(group_of))
    summaries = (
        per_set.groupby(["method", "group"], sort=False)[list(COLUMNS)]
        .mean()
        .reset_index()
        .assign(ood_set=lambda f: f["group"] + " mean")
    )
    rank = {  # methods in their order, groups near then far, each group's mean after its sets
        "method": {m: i for i, m in enumerate(per_set["method"].unique())},
        "group": {g: i for i, g in enumerate(groups)},
    }
    table = pd.concat([per_set, summaries], ignore_index=True).sort_values(
        ["method", "group", "ood_set"],
        key=lambda column: (
            column.map(rank[column.name])
            if column.name in rank
            else column.str.endswith(" mean")
        ),
        kind="stable",
        ignore_index=True,
    )[["method", "group", "ood_set", *COLUMNS]]
    return Report(
        benchmark.name, str(features.model), convention, table, features.accuracy
    )


def markdown(report: Report) -> str:
    """A Markdown table (per set FPR95/AUROC, near and far means), with the FPR95 convention stated."""
    wide = report.wide().round(2)
    header = ["method", *wide.columns]
    lines = [
        (
            f"**{report.benchmark}**, model `{report.model}` (ID accuracy {report.accuracy:.2f} %). "
            f"Metrics in %. {FPR_LABELS[report.convention]}; AUROC: ID positive."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method, row in wide.iterrows():
        lines.append("| " + " | ".join([method, *(f"{v:.2f}" for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def latex(report: Report) -> str:
    """A booktabs ``tabular`` of the same table (escape-safe labels), with the convention in a comment."""

    def escape(text: str) -> str:
        for char, repl in (
            ("\\", r"\textbackslash{}"),
            ("&", r"\&"),
            ("%", r"\%"),
            ("_", r"\_"),
            ("#", r"\#"),
        ):
            text = text.replace(char, repl)
        return text

    wide = report.wide().round(2)
    lines = [
        f"% {report.benchmark}, model {report.model}; metrics in %; {FPR_LABELS[report.convention]}",
        r"\begin{tabular}{l" + "r" * len(wide.columns) + "}",
        r"\toprule",
        " & ".join(["Method", *(escape(c) for c in wide.columns)]) + r" \\",
        r"\midrule",
    ]
    for method, row in wide.iterrows():
        lines.append(" & ".join([escape(method), *(f"{v:.2f}" for v in row)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def save(report: Report, folder: Path) -> list[Path]:
    """Write ``<benchmark>_<model>_<fpr>_<time>.{md,csv,tex,json}`` into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report.benchmark}_{report.model}_fpr-{report.convention}_{time.strftime('%Y%m%d-%H%M%S')}"
    paths = [folder / f"{stem}.{ext}" for ext in ("md", "csv", "tex", "json")]
    paths[0].write_text(markdown(report))
    report.table.to_csv(paths[1], index=False)
    paths[2].write_text(latex(report))
    paths[3].write_text(
        json.dumps(
            {
                "benchmark": report.benchmark,
                "model": report.model,
                "convention": report.convention,
                "fpr95": FPR_LABELS[report.convention],
                "accuracy": report.accuracy,
            }
        )
    )
    return paths


def saved(folder: Path) -> list[Report]:
    """Every report saved in ``folder`` (newest first); unreadable files are skipped."""
    found = []
    for meta_path in (
        sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []
    ):
        try:
            meta = json.loads(meta_path.read_text())
            table = pd.read_csv(meta_path.with_suffix(".csv"))
            found.append(
                Report(
                    meta["benchmark"],
                    meta["model"],
                    meta["convention"],
                    table,
                    meta["accuracy"],
                )
            )
        except (OSError, ValueError, KeyError):
            continue
    return found
