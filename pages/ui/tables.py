"""Metric tables as pages show them: one number format everywhere (2 decimals in tables), each value with its
95 % interval, and a column's best value highlighted only where it is significantly best (ties shown as ties)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from ood_core.comparisons import Leader

BEST = "background-color: #d4edda; font-weight: 600"
TIED = "background-color: #fff3cd"
CHANGED = "background-color: #dbe9f9"  # the row whose sliders are shown
MARK = " "  # the header of the marker column


def with_interval(value: float, low: float | None, high: float | None) -> str:
    """``87.23 ± 1.10`` (the half-width of a symmetric interval) or ``12.30 [10.10, 14.50]``."""
    if low is None or high is None or pd.isna(low):
        return f"{value:.2f}"
    if abs((value - low) - (high - value)) < 0.01:
        return f"{value:.2f} ± {(high - low) / 2:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def pivot_with_intervals(
    table: pd.DataFrame, metric: str, order: Sequence[str], sets: Sequence[str]
) -> pd.DataFrame:
    """``method × OOD set`` of ``metric`` as text with its interval (when the table has one)."""
    low, high = f"{metric} low", f"{metric} high"
    cells: dict[tuple[str, str], str] = {
        (method, column): with_interval(value, low_value, high_value)
        for method, column, value, low_value, high_value in zip(
            table["method"],
            table["ood_set"],
            table[metric],
            table[low] if low in table else [None] * len(table),
            table[high] if high in table else [None] * len(table),
        )
    }
    return pd.DataFrame(
        {
            column: [cells.get((method, column), "") for method in order]
            for column in sets
        },
        index=pd.Index(list(order), name="method"),
    )


def leaderboard(
    table: pd.DataFrame,
    metric: str,
    order: Sequence[str],
    sets: Sequence[str],
    leaders: Mapping[str, Leader],
    key: str,
    changed: str | None = None,
) -> None:
    """The pivot of ``metric`` with intervals: per column the best cell green where the paired test says it is
    best, the best two amber where they are not clearly apart; the row of ``changed`` (the method whose sliders are
    shown) marked ▶ and tinted blue."""
    shown = pivot_with_intervals(table, metric, order, sets).reset_index()
    row = {method: i for i, method in enumerate(order)}
    if changed in row:  # a narrow first column points at the row the sliders move
        shown.insert(0, MARK, ["▶" if method == changed else "" for method in order])

    def style(frame: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=frame.index, columns=frame.columns)
        if changed in row:
            css.loc[row[changed]] = CHANGED
        for (
            column,
            leader,
        ) in leaders.items():  # a leader's colour shows on the marked row too
            if column not in css:
                continue
            if leader.tied:
                css.loc[[row[leader.best], row[leader.runner]], column] = TIED
            else:
                css.loc[row[leader.best], column] = BEST
        return css

    st.dataframe(
        shown.style.apply(style, axis=None),
        hide_index=True,
        width="stretch",
        height="content",  # every row, and no blank one below the last
        column_config={
            MARK: st.column_config.TextColumn(MARK, width=28),
            "method": st.column_config.TextColumn("method", width="medium"),
        },
        key=key,
    )
