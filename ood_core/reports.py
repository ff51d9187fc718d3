"""Benchmark reports in the formats people publish: per-set FPR95/AUROC/AUPR, near- and far-OOD means, written as
Markdown, CSV and LaTeX.

Near/far summaries are unweighted means of the per-set metrics (OpenOOD's ``np.mean`` over sets). FPR95 is labelled
with its convention everywhere (``metrics.FPR95_CONVENTIONS``): ``id`` — the share of OOD accepted at 95 % of ID kept
(the seed papers, ODIN); ``ood`` — the share of ID rejected at 95 % of OOD caught (OpenOOD, pytorch-ood). A report
on an OpenOOD benchmark defaults to ``ood`` so that its numbers compare with OpenOOD's tables; the demo's to ``id``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import Field, StringConstraints

from .errors import OODLabError
from .inputs import config
from .inputs.benchmarks import Benchmark
from .metrics import (
    BOOTSTRAP_RESAMPLES,
    auroc_mean_interval,
    bootstrap_table,
    metrics_table,
)
from .schema import MAX_FILE_BYTES, Strict, read_json
from .scores.method import Method
from .tables import method_label
from .workspace import LoadedWorkspace

FPR_LABELS = {
    "id": "FPR95 (ID+: OOD accepted at 95% ID kept)",
    "ood": "FPR95 (OOD+: ID rejected at 95% OOD caught)",
}
COLUMNS = ("FPR95", "AUROC", "AUPR-In", "AUPR-Out")
INTERVALS = tuple(f"{m} {end}" for m in COLUMNS for end in ("low", "high"))


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

    def cell(self, method: str, ood_set: str, metric: str) -> str:
        """``87.23 [85.10, 89.33]``: a value (%) and its 95 % interval when the report has one."""
        row = self.table[
            (self.table.method == method) & (self.table.ood_set == ood_set)
        ].iloc[0]
        low, high = row.get(f"{metric} low"), row.get(f"{metric} high")
        if low is None or pd.isna(low):
            return f"{row[metric]:.2f}"
        return f"{row[metric]:.2f} [{low:.2f}, {high:.2f}]"


def build(
    features: LoadedWorkspace,
    benchmark: Benchmark,
    methods: Sequence[tuple[Method, dict]],
    convention: str,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> Report:
    """Score every method on every test OOD set of ``benchmark``; add the near/far means and every value's 95 %
    interval (AUROC: DeLong; FPR95 and AUPR: a stratified bootstrap of ``resamples``, none with 0)."""
    groups = benchmark.groups()
    results = {method_label(m, p): features.scores(m, p) for m, p in methods}
    per_set = metrics_table(results, mean=False, fpr_convention=convention)
    group_of = {name: group for group, names in groups.items() for name in names}
    per_set.insert(1, "group", per_set["ood_set"].map(group_of))
    summaries = (
        per_set.groupby(["method", "group"], sort=False)[list(COLUMNS)]
        .mean()
        .reset_index()
        .assign(ood_set=lambda f: f["group"] + " mean")
    )
    for (
        method,
        scored,
    ) in (
        results.items()
    ):  # each group mean's AUROC interval (the sets share the ID samples)
        for group, names in groups.items():
            _, low, high = auroc_mean_interval(scored, names)
            row = (summaries.method == method) & (summaries.group == group)
            summaries.loc[row, ["AUROC low", "AUROC high"]] = [low, high]
    if resamples:
        boot = bootstrap_table(
            results,
            convention,
            resamples,
            means={f"{g} mean": names for g, names in groups.items()},
        )
        per_set = per_set.merge(boot, on=["method", "ood_set"], how="left")
        summaries = summaries.merge(boot, on=["method", "ood_set"], how="left")
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
    )
    table = table[
        [c for c in ("method", "group", "ood_set", *COLUMNS, *INTERVALS) if c in table]
    ]
    return Report(
        benchmark.name, str(features.model), convention, table, features.accuracy
    )


def markdown(report: Report) -> str:
    """A Markdown table (per set FPR95/AUROC, near and far means), with the FPR95 convention stated."""
    wide = report.wide()
    header = ["method", *wide.columns]
    lines = [
        (
            f"**{report.benchmark}**, model `{report.model}` (ID accuracy {report.accuracy:.2f} %). "
            f"Metrics in % with 95 % intervals [low, high] (AUROC: DeLong; FPR95, AUPR: stratified bootstrap). "
            f"{FPR_LABELS[report.convention]}; AUROC: ID positive."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method in wide.index:
        cells = [report.cell(method, *c.rsplit(" ", 1)) for c in wide.columns]
        lines.append("| " + " | ".join([method, *cells]) + " |")
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
    for method in wide.index:
        cells = [
            report.cell(method, *c.rsplit(" ", 1))
            .replace(" [", r" {\scriptsize[")
            .replace("]", "]}")
            for c in wide.columns
        ]
        lines.append(" & ".join([escape(method), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


class SavedReport(Strict):
    """A report's ``.json`` beside its ``.csv``: what the Reports page reads back (checked field by field)."""

    benchmark: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    convention: Literal["id", "ood"]
    fpr95: str = ""
    accuracy: Annotated[float, Field(allow_inf_nan=False)] | None


TABLE_COLUMNS = ("method", "group", "ood_set", *COLUMNS)


def _claim(folder: Path, stem: str) -> str:
    """A stem no other report uses: the Markdown file is created exclusively (``stem``, ``stem-2``, …), so two
    reports written in the same second never overwrite each other."""
    for attempt in range(1, 1000):
        name = stem if attempt == 1 else f"{stem}-{attempt}"
        try:
            os.close(
                os.open(folder / f"{name}.md", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            )
        except FileExistsError:
            continue
        return name
    raise OODLabError(f"{folder} already holds 999 reports named {stem}-*")


def save(report: Report, folder: Path) -> list[Path]:
    """Write ``<benchmark>_<model>_<fpr>_<time>.{md,csv,tex,json}`` into ``folder``; the paths written. The
    ``.json`` is written last and atomically, so a reader never lists a half-written report."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stem = _claim(
            folder,
            f"{report.benchmark}_{report.model}_fpr-{report.convention}_{time.strftime('%Y%m%d-%H%M%S')}",
        )
        paths = [folder / f"{stem}.{ext}" for ext in ("md", "csv", "tex", "json")]
        paths[0].write_text(markdown(report))
        report.table.to_csv(paths[1], index=False)
        paths[2].write_text(latex(report))
        meta = SavedReport(
            benchmark=report.benchmark,
            model=report.model,
            convention=report.convention,
            fpr95=FPR_LABELS[report.convention],
            accuracy=report.accuracy if math.isfinite(report.accuracy) else None,
        )
        partial = folder / f".{stem}.json.partial"
        partial.write_text(meta.model_dump_json())
        os.replace(partial, paths[3])
    except OSError as exc:
        raise OODLabError(
            f"cannot write the report into {folder}: {exc.strerror or exc}"
        ) from None
    return paths


def saved(folder: Path) -> tuple[list[Report], list[tuple[str, str]]]:
    """Every report saved in ``folder`` (newest first), and each file that is not a readable report with why
    (a bad file is listed, never a crash)."""
    found, problems = [], []
    for meta_path in (
        sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []
    ):
        try:
            meta = read_json(SavedReport, meta_path, "report")
            table = _table(meta_path.with_suffix(".csv"))
        except OODLabError as exc:
            problems.append((meta_path.name, str(exc)))
            continue
        accuracy = math.nan if meta.accuracy is None else meta.accuracy
        found.append(
            Report(meta.benchmark, meta.model, meta.convention, table, accuracy)
        )
    return found, problems


def _table(path: Path) -> pd.DataFrame:
    """A report's CSV table, checked: its columns, text labels, numbers in [0, 100] or empty."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OODLabError(f"{path.name} is larger than a report table can be")
        table = pd.read_csv(path, dtype={c: str for c in TABLE_COLUMNS[:3]})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise OODLabError(
            f"{path.name} cannot be read as a report table ({exc})"
        ) from None
    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise OODLabError(f"{path.name} lacks the column(s) {', '.join(missing)}")
    numbers = table[list(COLUMNS)].apply(pd.to_numeric, errors="coerce")
    if numbers.isna().to_numpy().sum() > table[list(COLUMNS)].isna().to_numpy().sum():
        raise OODLabError(f"{path.name} holds metric values that are not numbers")
    if ((numbers < 0) | (numbers > 100)).to_numpy().any():
        raise OODLabError(f"{path.name} holds metric values outside 0–100 %")
    table[list(COLUMNS)] = numbers
    kept = [*TABLE_COLUMNS, *(c for c in INTERVALS if c in table)]
    return table[kept].fillna({"group": ""})
