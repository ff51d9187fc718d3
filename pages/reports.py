"""Reports: benchmark reports saved by ``python -m ood_core report``, side by side."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import pandas as pd
import streamlit as st

from ood_core import reports
from pages.ui.sections import prose
from pages.ui.shell import run_page
from pages.ui.text import plain


def main() -> None:
    st.title("Reports")
    prose(
        "Benchmark reports written by `python -m ood_core report --benchmark B --model M` (per-set FPR95 / AUROC, "
        "near- and far-OOD means as unweighted means over sets, as OpenOOD). Each names its FPR95 convention: "
        "**ID+** = OOD accepted at 95 % of ID kept (the seed papers), **OOD+** = ID rejected at 95 % of OOD caught "
        "(OpenOOD); see the [Primer](/primer#fpr95)."
    )
    folder = reports.folder()
    found, problems = reports.saved(folder)
    if problems:
        st.warning(
            f"{len(problems)} file(s) in the reports folder are not readable reports and are left out:"
        )
        st.dataframe(
            pd.DataFrame(problems, columns=["file", "problem"]),
            hide_index=True,
            width="stretch",
        )
    if not found:
        st.info(
            f"No reports in `{folder}` yet. Write one with `python -m ood_core report` (the demo) or "
            "`python -m ood_core report --benchmark openood-cifar10 --model <your model>`."
        )
        st.stop()
    labels = [
        f"{r.benchmark} · {r.model} · FPR95 {r.convention.upper()}+ · #{i}"
        for i, r in enumerate(found)
    ]
    chosen = st.multiselect(
        "Reports to compare",
        labels,
        default=labels[: min(2, len(labels))],
        key="reports_chosen",
    )
    summary = []
    for label in chosen:
        report = found[labels.index(label)]
        means = report.table[report.table.ood_set.str.endswith(" mean")]
        for row in means.itertuples():
            summary.append(
                {
                    "report": label,
                    "method": row.method,
                    "group": row.group,
                    "AUROC": row.AUROC,
                    "FPR95": row.FPR95,
                }
            )
    if summary:
        frame = pd.DataFrame(summary)
        st.subheader("Near- and far-OOD means")
        st.dataframe(
            frame.pivot_table(
                index="method", columns=["report", "group"], values="AUROC", sort=False
            ).round(2),
            width="stretch",
            key="reports_summary",
        )
    for column, label in zip(st.columns(max(1, len(chosen))), chosen):
        report = found[labels.index(label)]
        with column:
            st.subheader(plain(label))
            st.caption(
                f"{reports.FPR_LABELS[report.convention]}; ID accuracy {report.accuracy:.2f} %"
            )
            st.dataframe(report.wide().round(2), width="stretch")


run_page(main)
