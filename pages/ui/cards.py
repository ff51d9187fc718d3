"""What a page says about its numbers: the opening (formula and paper), metric cards, and the observations that
check a paper's claim against the current numbers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from ood_core import observations as notes
from ood_core.metrics import Difference
from ood_core.observations import CHANCE_BAND, Observation, at_chance
from ood_core.pictures.export import metric_cards as cards_png
from ood_core.scores.method import Method
from ood_core.workspace import LoadedWorkspace

from .sections import about
from .sidebar import workspace

PRIMER = "/primer"
AUROC_HELP = (
    "Area under the ROC curve: the chance that a random ID image scores higher than a random OOD image "
    f"(50 = coin flip, 100 = perfect). [Primer]({PRIMER}#auroc)"
)
BADGES = {
    True: ":green-badge[:material/check: as in the paper]",
    False: ":orange-badge[:material/warning: unlike the paper]",
    None: ":gray-badge[:material/info: note]",
}


def intro(text: str, method: Method, *formulas: str) -> None:
    """The page's plain-language opening, the method's formula and its paper (in presentation mode folded under
    "About this page", so that the first screen shows a chart)."""
    where = about()
    where.markdown(text)
    for formula in (method.formula, *formulas):
        where.latex(formula)
    where.caption(
        f"Paper: [{method.paper.title}]({method.paper.url}) ({method.paper.venue}). Scores: higher = more ID."
    )


@contextmanager
def first_use_progress(
    after_s: float = 0.5,
) -> Iterator[Callable[[int, int, str], None]]:
    """A ``progress(done, total, label)`` callback that draws a progress bar once the work has run ``after_s``
    (a method's first use at benchmark size fits train statistics for seconds; a cached rerun never shows it)."""
    placeholder, started, shown = st.empty(), time.perf_counter(), False

    def progress(done: int, total: int, label: str) -> None:
        nonlocal shown
        if time.perf_counter() - started >= after_s:
            shown = True
            placeholder.progress(
                done / max(total, 1),
                text=f"Scoring {label} ({done + 1} of {total}): a method's first use on this workspace fits its train "
                "statistics and stores them in the cache, so later visits and slider moves reuse them.",
            )

    yield progress
    if shown:
        placeholder.empty()


def _delta(
    value: float, base: float, label: str, difference: Difference | None
) -> tuple[str, str]:
    """A card's delta text and colour: green/red only when the paired test says the difference is real, grey
    against a base at or below chance (beating a coin flip, or a reversed score, is not progress)."""
    text = f"{value - base:+.1f} vs {label}"
    if base < 50 - CHANCE_BAND:
        return text + " (base below chance)", "off"
    if at_chance(base) or at_chance(value):
        return text + " (at chance)", "off"
    if difference is not None and not difference.significant:
        return text + " (no clear difference)", "off"
    return text, "normal"


def metric_cards(
    table: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    reference_label: str = "base",
    export: str | None = None,
    differences: Mapping[str, Difference] | None = None,
) -> None:
    """One AUROC card per OOD set (1 decimal, DeLong's 95 % interval and FPR95 beneath), with the delta against
    ``reference`` rows of the same ood_set: coloured only where ``differences`` (paired tests) say it is real,
    grey against a base at or below chance. ``export`` names a PNG download of the cards (for slides)."""
    rows = table.set_index("ood_set")
    bases = None if reference is None else reference.set_index("ood_set")["AUROC"]
    columns = st.columns(len(rows))
    for column, (name, row) in zip(columns, rows.iterrows()):
        delta, colour_mode = None, "normal"
        if bases is not None:
            delta, colour_mode = _delta(
                row["AUROC"],
                bases[name],
                reference_label,
                (differences or {}).get(name),
            )
        column.metric(
            f"AUROC · {name}",
            f"{row['AUROC']:.1f}",
            delta,
            delta_color=colour_mode,
            help=AUROC_HELP,
        )
        interval = (
            f"95 % CI {row['AUROC low']:.1f}–{row['AUROC high']:.1f} · "
            if "AUROC low" in row
            else ""
        )
        column.caption(f"{interval}FPR95 {row['FPR95']:.1f} %")
    if export:
        label = table["method"].iloc[0] if "method" in table else export
        st.download_button(
            "Cards (PNG)",
            lambda: cards_png(table, label),  # drawn when downloaded, not on every move
            f"{export}_cards.png",
            "image/png",
            key=f"export_{export}_cards",
        )


def mean_auroc(table: pd.DataFrame) -> float:
    """The mean AUROC over the OOD sets of a one-method metrics table."""
    return float(notes.mean_by(table, "method").iloc[0])


def context(features: LoadedWorkspace) -> str:
    """What to blame when the data disagree with a paper: the demo's size, or the user's own setting."""
    if features.benchmark is None and workspace().model.startswith("demo"):
        return notes.SMALL_MODEL
    return "results depend on the model, its training and the OOD sets; the papers report their benchmarks' averages"


def observations(items: list[Observation], key: str) -> None:
    """The page's "what you should see here" block: sentences generated from the current numbers, each badged as
    agreeing or disagreeing with the paper's claim only when the claim is significant at 5 % (Holm-corrected over
    the block's claims), with one line on why a disagreement can happen."""
    with st.container(border=True, key=f"observations_{key}"):
        st.markdown(
            "**What you should see here** — generated from the numbers on this page; a claim is checked only "
            "when the difference is significant (paired tests, 5 %, Holm-corrected)"
        )
        for item in notes.settle(items):
            line = f"{BADGES[item.agrees]} {item.text}"
            if item.agrees is False and item.why:
                line += f"  \n*Why this can happen:* {item.why}"
            st.markdown(line)
