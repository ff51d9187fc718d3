"""Primer: the metrics and words every other page uses, with a small interactive ROC / threshold picture."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from ood_core.metrics import ALL_METRICS, FPR95_OOD, IDReference, roc_points
from ood_core.scores.method import Param
from pages.ui.boundary import fragment
from pages.ui.charts import ID_COLOUR, OOD_COLOURS, reference_line, show_shared
from pages.ui.controls import slider
from pages.ui.sections import prose, section
from pages.ui.shell import run_page
from pages.ui.state import reset_button

GAP = Param(
    "gap",
    1.5,
    0.0,
    4.0,
    0.1,
    "Distance between the two score distributions, in units of the OOD spread.",
)
SPREAD = Param("spread", 1.0, 0.3, 3.0, 0.1)


def main() -> None:
    st.title("Primer — how OOD detection is measured")
    prose(
        "A detector gives every image a **score**; in OOD Lab higher always means *more in-distribution* (ID). "
        "Choosing a threshold splits images into *kept as ID* and *rejected as OOD*. Every metric below summarises how "
        "well ID and OOD scores are separated. Move the sliders to see them change together."
    )
    reset_button(
        "primer",
        ("primer_gap", "primer_spread", "primer_threshold"),
        "↺ Reset the sliders",
    )
    section("Playground: one score, every metric", "playground")

    @fragment
    def playground() -> None:
        left, middle, right = st.columns(3)
        gap = slider("Separation of ID and OOD scores", GAP, "primer_gap", where=left)
        spread = slider("Spread of ID scores", SPREAD, "primer_spread", where=middle)
        rng = np.random.default_rng(0)
        id_scores = gap + spread * rng.standard_normal(2000)
        ood_scores = rng.standard_normal(2000)
        low, high = (
            float(min(id_scores.min(), ood_scores.min())),
            float(max(id_scores.max(), ood_scores.max())),
        )
        threshold = slider(
            "Threshold t (keep as ID when score ≥ t)",
            Param(
                "t",
                round(float(np.percentile(id_scores, 5)), 1),
                round(low, 1),
                round(high, 1),
                0.1,
            ),
            "primer_threshold",
            where=right,
        )
        tpr = 100 * float((id_scores >= threshold).mean())
        fpr = 100 * float((ood_scores >= threshold).mean())
        metrics = IDReference(id_scores).metrics(
            ood_scores
        )  # all five, both FPR95 conventions
        cards = st.columns(len(ALL_METRICS) + 2)
        cards[0].metric("ID kept at t (TPR)", f"{tpr:.1f} %")
        cards[1].metric("OOD accepted at t (FPR)", f"{fpr:.1f} %")
        for card, name in zip(cards[2:], ALL_METRICS):
            card.metric(name, f"{metrics[name]:.1f}")
        histogram, roc = st.columns(2)
        inputs = (gap, spread, threshold)
        show_shared(
            lambda: _scores_figure(id_scores, ood_scores, threshold),
            "primer_hist",
            inputs,
            where=histogram,
        )
        show_shared(
            lambda: _roc_figure(id_scores, ood_scores, tpr, fpr, metrics["AUROC"]),
            "primer_roc",
            inputs,
            where=roc,
        )

    playground()

    st.header("AUROC", anchor="auroc")
    st.markdown(
        "The area under the ROC curve, which plots the share of ID kept (TPR) against the share of OOD accepted (FPR) "
        "for every threshold. It equals the chance that a random ID image scores higher than a random OOD image: "
        "**50 = coin flip, 100 = perfect, below 50 = the score ranks OOD as more ID** (reversed). A gain of a few "
        "points over a method at 50 is not progress: both are guessing."
    )
    st.header("FPR95, both conventions", anchor="fpr95")
    st.markdown(
        "The share of mistakes at the threshold that keeps 95 % of one class. Lower is better. Two conventions exist, "
        "and papers rarely say which:\n"
        "- **FPR95** (OOD Lab's default; the seed papers, ODIN): ID is the positive class — the share of **OOD "
        "accepted** at the threshold that keeps 95 % of ID.\n"
        f"- **{FPR95_OOD}** (OpenOOD, pytorch-ood): OOD is the positive class — the share of **ID rejected** at the "
        "threshold that catches 95 % of OOD.\n\n"
        "The two differ whenever the score distributions are not mirror images; the playground above shows both."
    )
    st.header("AUPR-In and AUPR-Out", anchor="aupr")
    st.markdown(
        "Areas under precision–recall curves: **AUPR-In** with ID as the positive class, **AUPR-Out** with OOD "
        "positive. Unlike AUROC they depend on how many ID and OOD images there are (the base rate)."
    )
    st.header("ID percentile", anchor="id-percentile")
    st.markdown(
        "Where one image's score falls among the ID test scores: 50 = a typical ID image, below 5 = rejected at the "
        "threshold that keeps 95 % of ID (the *Try your own images* page colours those red)."
    )
    st.header("Pseudo-OOD", anchor="pseudo-ood")
    st.markdown(
        "OOD-like images made from ID training images (jigsaw puzzles of shuffled tiles, blur, noise, …) so that a "
        "method can be tuned or checked **without touching real OOD data**. Block Selection picks its block with "
        "jigsaw puzzles; the Tune page validates on them when the benchmark has no validation OOD set of its own. They "
        "are a proxy: the Block Selection page shows where it fails, and on the demo the Tune page's regret is 7 AUROC "
        "points with them against 1 with the demo's validation set."
    )
    st.header("Outlier exposure", anchor="outlier-exposure")
    st.markdown(
        "Training (or fine-tuning) with an auxiliary set of outliers so that the model learns to give them low scores. "
        "The Heatmaps decoder uses jigsaw puzzles as its outliers; a test OOD set used this way is left out of the "
        "evaluation."
    )
    st.header("Near and far OOD", anchor="near-far")
    st.markdown(
        "**Near-OOD** sets resemble the ID data (other classes of a similar domain: letters vs digits, CIFAR-100 vs "
        "CIFAR-10); **far-OOD** sets differ in domain or statistics (noise, textures, photos vs digits). Methods that "
        "read activation statistics often shine on far OOD and struggle on near OOD; report both."
    )


def _scores_figure(
    id_scores: np.ndarray, ood_scores: np.ndarray, threshold: float
) -> go.Figure:
    """Overlaid histograms of the ID and OOD scores, with the threshold t."""
    figure = go.Figure()
    for name, scores, colour in (
        ("ID", id_scores, ID_COLOUR),
        ("OOD", ood_scores, OOD_COLOURS[1]),
    ):
        figure.add_histogram(
            x=scores, name=name, marker_color=colour, opacity=0.55, nbinsx=60
        )
    figure.add_vline(x=threshold, line_dash="dot", annotation_text="t")
    figure.update_layout(
        barmode="overlay",
        title="Scores (higher = more ID)",
        height=330,
        margin={"t": 40, "b": 30},
    )
    return figure


def _roc_figure(
    id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float, fpr: float, auroc: float
) -> go.Figure:
    """The ROC curve with the threshold's (FPR, TPR) point and the TPR 95 % line."""
    points = roc_points(id_scores, ood_scores, max_points=400)
    curve = go.Figure(
        go.Scatter(
            x=100 * points["fpr"], y=100 * points["tpr"], mode="lines", name="ROC"
        )
    )
    curve.add_scatter(
        x=[fpr],
        y=[tpr],
        mode="markers",
        marker={"size": 12, "color": "#d62728"},
        name="threshold t",
    )
    curve.update_layout(
        title=f"ROC curve: AUROC {auroc:.1f} = the area under it",
        xaxis_title="FPR: OOD accepted (%)",
        yaxis_title="TPR: ID kept (%)",
        height=330,
        margin={"t": 40, "b": 30},
    )
    curve.update_layout(showlegend=False)  # the red point is the threshold t above
    reference_line(curve, 95, "TPR 95 %")
    return curve


run_page(main)
