"""The workspace every page shows: the model, ID set and OOD sets picked in the sidebar (a deep link or a lecture
step can preset them), and the cached features pages read."""

from __future__ import annotations

import streamlit as st

from ood_core.errors import OODLabError
from ood_core.inputs import benchmarks, catalog
from ood_core.workspace import LoadedWorkspace, Workspace, cached_workspace

from . import links
from .boundary import callback
from .state import keep_widget_state
from .text import plain


def workspace() -> Workspace:
    return st.session_state.get("workspace", Workspace())


def _apply_link(values: dict[str, str]) -> None:
    """A link's ``model``, ``id`` and ``ood`` keys preset the workspace (the sidebar checks the names)."""
    if not values:
        return
    current = workspace()
    st.session_state["workspace"] = Workspace(
        values.get("model", current.model),
        values.get("id", current.id_dataset),
        tuple(
            filter(None, values.get("ood", ",".join(current.ood_datasets)).split(","))
        ),
    )


def _sync_widgets(current: Workspace) -> None:
    """When the workspace was set from outside the sidebar (a deep link, a lecture step, a test), show it there."""
    if (
        st.session_state.get("_widgets_show") == current
        and all(key in st.session_state for key in ("ws_model", "ws_id", "ood_sets"))
    ):  # (Streamlit drops a widget's state when a run ends before drawing it, e.g. on switch_page)
        return
    st.session_state["ws_model"] = current.model
    st.session_state["ws_id"] = current.id_dataset
    st.session_state["ood_sets"] = list(current.ood_datasets)


def sidebar_workspace() -> None:
    """Model, ID set and OOD sets, kept in ``st.session_state['workspace']`` (a deep link can preset them); every
    page's kept widget values are carried over first."""
    keep_widget_state()
    _apply_link(links.capture())
    current = workspace()
    with st.sidebar:
        st.header("Workspace")
        try:
            models, datasets = catalog.models(), catalog.datasets()
        except OODLabError as exc:
            st.error(plain(exc, limit=600))
            return
        _sync_widgets(current)
        names = list(models)
        if st.session_state["ws_model"] not in names:
            st.session_state["ws_model"] = names[0]
        model = st.selectbox(
            "Model",
            names,
            key="ws_model",
            help="Registered models: the embedded demo, those in the registry file (see README), models fine-tuned "
            "here and synthetic workspaces (`python -m ood_core synth`).",
        )
        spec = models[model]
        id_choices = [n for n, d in datasets.items() if d.in_distribution]
        if model != current.model or st.session_state["ws_id"] not in id_choices:
            preferred = (
                spec.default_id if model != current.model else current.id_dataset
            )
            st.session_state["ws_id"] = (
                preferred if preferred in id_choices else id_choices[0]
            )
        id_dataset = st.selectbox(
            "ID dataset",
            id_choices,
            key="ws_id",
            help="The model's training distribution.",
        )
        ood_choices = [n for n in datasets if n != id_dataset]
        chosen = st.session_state["ood_sets"]
        if (
            model != current.model and spec.default_ood
        ):  # a new model brings its own OOD sets
            chosen = list(spec.default_ood)
        st.session_state["ood_sets"] = [n for n in chosen if n in ood_choices]
        ood = st.multiselect(
            "OOD datasets",
            ood_choices,
            help="Sets the detector should reject.",
            key="ood_sets",
        )
        _benchmark_picker(datasets)
        chosen_workspace = Workspace(model, id_dataset, tuple(ood))
        st.session_state["workspace"] = chosen_workspace
        st.session_state["_widgets_show"] = chosen_workspace
        links.presentation_link()
        st.toggle(
            "Presentation mode",
            key="present",
            help="For a lecture at 1280×720: large type and thumbnails, pages in a top bar, no sidebar or toolbars. "
            "Leave it with the button at the bottom of each page, or link with ?present=1.",
        )


@callback
def _choose_benchmark() -> None:
    """Put the chosen benchmark's ID set and test OOD sets into the sidebar's widgets."""
    name = st.session_state.get("ws_benchmark")
    if name in benchmarks.BENCHMARKS:
        chosen = benchmarks.BENCHMARKS[name]
        st.session_state["ws_id"] = chosen.id_dataset
        st.session_state["ood_sets"] = list(chosen.ood_datasets)


def _benchmark_picker(datasets: dict) -> None:
    """A shipped benchmark whose datasets are all available sets the ID and OOD sets in one click; the others are
    listed with what is missing."""
    ready = [
        b.name
        for b in benchmarks.BENCHMARKS.values()
        if {b.id_dataset, *b.ood_datasets} <= set(datasets)
    ]
    st.selectbox(
        "Benchmark",
        ["—", *ready],
        key="ws_benchmark",
        on_change=_choose_benchmark,
        help="A shipped protocol (OpenOOD v1.5, or the demo): sets the ID dataset and the near/far OOD sets. "
        "OpenOOD benchmarks appear once their image lists are under the data root (Setup lists what is missing).",
    )


def absent_benchmarks() -> None:
    """Which shipped benchmarks cannot be picked yet, and how many of their files are missing (for Setup)."""
    datasets = catalog.datasets()
    absent = [
        b
        for b in benchmarks.BENCHMARKS.values()
        if not {b.id_dataset, *b.ood_datasets} <= set(datasets)
    ]
    if absent:
        st.caption(
            "Benchmarks not available yet: "
            + ", ".join(
                f"{b.name} ({len(benchmarks.missing(b))} files missing)" for b in absent
            )
            + " — `python -m ood_core report --benchmark <name>` lists them."
        )


def require_features() -> LoadedWorkspace:
    """The workspace's cached features, or a pointer to the Setup page (and stop) if anything is missing."""
    features = cached_workspace(workspace())
    if features is None or not features.ood:
        st.info(
            "This page reads cached features. Prepare them on the Setup page first (one click)."
        )
        st.page_link("pages/setup.py", label="Go to Setup", icon=":material/tune:")
        st.stop()
    for f in [features.id_test, *features.ood.values()]:
        for note in f.notes:
            st.warning(plain(note, limit=600))
    return features


def synthetic(features: LoadedWorkspace) -> bool:
    """Whether this is a synthetic workspace (cached statistics only, no images)."""
    return bool(features.id_test.meta.get("synthetic"))


def needs_images(features: LoadedWorkspace, what: str, stop: bool = False) -> bool:
    """``True`` if ``features`` has images; otherwise say that ``what`` needs them (and stop the page if asked)."""
    if not synthetic(features):
        return True
    st.info(
        f"This is a synthetic workspace (cached statistics only): it has no images, so {what} cannot be shown."
    )
    if stop:
        st.stop()
    return False


def entries_key(features: LoadedWorkspace) -> str:
    """A small string naming the cache entries behind ``features`` (a ``st.cache_data`` key, never the arrays)."""
    sets = [
        features.id_test,
        features.id_train,
        features.jigsaw,
        *features.ood.values(),
    ]
    return "|".join(f"{f.root}@{f.meta.get('created')}" for f in sets if f is not None)
