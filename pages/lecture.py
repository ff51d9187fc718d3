"""Guided lecture: the five ideas as one story, a goal per step, and a link that opens each page in the right state."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from ood_core import claims, tables
from ood_core import observations as notes
from ood_core.scores import METHODS, get_method
from ood_core.training.background import BackgroundSettings
from pages.ui.cards import context, observations
from pages.ui.controls import segmented
from pages.ui.shell import presenting, run_page
from pages.ui.sidebar import require_features, workspace


@dataclass(frozen=True)
class Step:
    """One step of the lecture: what to show, why, where, and the widget values the link sets."""

    title: str
    goal: str
    page: str
    look: str
    focus: str  # the anchor of the section the step lands on (``sections.section``)
    state: dict[str, object] = field(default_factory=dict)


def main() -> None:
    st.title("Guided lecture — five ideas for activation-based OOD detection")
    features = require_features()
    ws = workspace()
    blocks = features.id_test.blocks
    line = get_method("line").defaults(features.benchmark)
    STEPS = [
        Step(
            "0 · How we measure",
            "Know what AUROC and FPR95 say before reading any number.",
            "pages/primer.py",
            "Drag the separation to 0: AUROC falls to 50 (a coin flip) and FPR95 to 95 %.",
            "playground",
            {"primer_gap": 1.5},
        ),
        Step(
            "1 · The activation prior (NAP)",
            "See why a channel's max/mean ratio separates ID from OOD before pooling.",
            "pages/nap.py",
            "In the scatter, ID points reach a higher max at the same mean; the S_NAP histogram separates the sets.",
            "prior",
            {"nap_prior_block": blocks[-1]},
        ),
        Step(
            "2 · Where the prior lives",
            "Test the paper's claim that the last block is best on this model.",
            "pages/nap.py",
            "The depth bars and the note under them: which block wins, and whether that matches the paper.",
            "depth",
        ),
        Step(
            "3 · NAP-X: combining two scores",
            "Combine NAP with Energy at the paper's λ and check the result beats both parts.",
            "pages/nap.py",
            "The cards and the λ curve: where does it peak, and is the paper's λ = 0.4 near the peak?",
            "nap-x",
            {"nap_base": "NAP-Energy", "nap_x:nap-energy:lambda": 0.4},
        ),
        Step(
            "4 · Block Selection without OOD data",
            "Pick a block from jigsaw puzzles (NormRatio), then check the pick against the real OOD sets.",
            "pages/block_selection.py",
            "The three cards, the heatmap, and the FeatureNorm histograms: jigsaw and real OOD can sit on opposite sides.",
            "normratio",
            {"bs_grid": 3},
        ),
        Step(
            "5 · LINe: only the important neurons",
            "Prune each class to its important neurons (Shapley) and clip; see what ID samples lose.",
            "pages/line.py",
            "The cards against Energy, then one ID sample under the microscope: its logits before and after.",
            "live",
            {
                "line:line:p_a": float(line["p_a"]),
                "line:line:p_w": float(line["p_w"]),
                "line_sample_set": "ID",
                "line_sample_row": 0,
            },
        ),
        Step(
            "6 · Where an image looks OOD",
            "See which regions drive the decision: Grad-CAM, NAP's peaks, and (once trained) the OOD decoder.",
            "pages/heatmaps.py",
            "Galleries of the most OOD-like images per set; switch the overlay.",
            "gallery",
            {"heatmap_overlay": "Grad-CAM"},
        ),
        Step(
            "7 · Local background features",
            "Fine-tune with the background term, and against plain fine-tuning (α = 0) as the control.",
            "pages/background.py",
            "The paired table: what α adds beyond fine-tuning itself, for Energy and for NAP.",
            "before-after",
            {"bg_alpha": 0.1},
        ),
        Step(
            "8 · All together, honestly",
            "Compare every method on the same cache, then choose hyperparameters on validation data only.",
            "pages/compare.py",
            "The table and its note; then the Tune page's regret: what peeking at the test sets would have bought.",
            "table",
        ),
    ]

    def link(step: Step) -> dict[str, str]:
        """Query parameters that open ``step.page`` in the step's state, in this workspace (a shareable link)."""
        return {
            "model": ws.model,
            "id": ws.id_dataset,
            "ood": ",".join(ws.ood_datasets),
            **{key: str(value) for key, value in step.state.items()},
            "focus": step.focus,
            **({"present": "1"} if presenting() else {}),
        }

    @st.cache_data(max_entries=16, show_spinner="Reading the data for this step…")
    def step_notes(_features, key: str, index: int) -> list[notes.Observation]:
        """The observations a step's page will show, computed here so the lecturer knows before opening it."""
        if index == 0:
            return claims.reading_metrics(_features)
        if index == 1:
            return claims.prior(_features)
        if index == 2:
            return [claims.nap_depth(_features, context(_features))]
        if index == 3:
            method = get_method("nap-energy")
            return [
                claims.combination(
                    _features, method, _features.resolved(method, {"lambda": 0.4})
                )
            ]
        if index == 4 and _features.jigsaw is not None:
            return claims.block_selection(
                _features, _features.normratio(), context(_features)
            )
        if index == 5 and _features.id_train is not None:
            return claims.line_vs_energy(_features, {}, context(_features))
        if index == 6:
            return claims.heatmap_decoder(_features)
        if index == 7 and _features.id_train is not None:
            return claims.background(_features, BackgroundSettings(alpha=0.1))
        if index == 8:
            every = [(m, {}) for m in METHODS.values() if m.cost == "cache"]
            return claims.best_methods(
                _features, tables.all_methods_table(_features, every), every
            )
        return []

    titles = [s.title for s in STEPS]
    index = titles.index(
        segmented(
            "Step",
            titles,
            default=titles[0],
            key="lecture_step",
            label_visibility="collapsed",
        )
        or titles[0]
    )
    step = STEPS[index]
    with st.container(border=True):
        st.subheader(step.title)
        st.markdown(f"**Goal:** {step.goal}")
        st.markdown(f"**Look at:** {step.look}")
        st.page_link(
            step.page,
            label="Open this step's page in its state",
            icon=":material/arrow_forward:",
            query_params=link(step),
        )
    found = step_notes(features, f"{ws}", index)
    if found:
        observations(found, f"lecture_{index}")
    previous, following = st.columns(2)
    if index > 0:
        previous.button(
            f"← {STEPS[index - 1].title}",
            key="lecture_previous",
            on_click=lambda: st.session_state.update(
                lecture_step=STEPS[index - 1].title
            ),
        )
    if index < len(STEPS) - 1:
        following.button(
            f"{STEPS[index + 1].title} →",
            key="lecture_next",
            on_click=lambda: st.session_state.update(
                lecture_step=STEPS[index + 1].title
            ),
        )
    if not presenting():
        st.subheader("The whole story")
        st.dataframe(
            pd.DataFrame(
                {"step": [s.title for s in STEPS], "goal": [s.goal for s in STEPS]}
            ),
            hide_index=True,
            width="stretch",
            key="lecture_overview",
        )
        st.caption(
            "Every page has a **↺ reset** button; the values you set on a page are kept when you leave it "
            "and come back. Presentation mode (sidebar) shows one step per screen at 1280×720."
        )


run_page(main)
