"""Shared UI pieces: the sidebar workspace, cached lookups and the ID/OOD colour scheme. No OOD math here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from ood_core import observations as notes
from ood_core.errors import OODLabError
from ood_core.inputs import benchmarks, catalog
from ood_core.observations import Observation, at_chance
from ood_core.pictures.export import metric_cards as cards_png
from ood_core.scores.method import BLOCK_SEPARATOR, Method, block_set
from ood_core.workspace import LoadedWorkspace, Workspace, cached_workspace

PRIMER = "/primer"
AUROC_HELP = (
    "Area under the ROC curve: the chance that a random ID image scores higher than a random OOD image "
    f"(50 = coin flip, 100 = perfect). [Primer]({PRIMER}#auroc)"
)
ID_COLOUR = "#1f77b4"
PSEUDO_OOD_COLOUR = "#7f7f7f"
OOD_COLOURS = px.colors.qualitative.Set2


def ensure_app_shell() -> None:
    """Run pages only inside app.py's shell (sidebar + ``st.navigation``).

    Streamlit treats a ``pages/`` folder beside the entry script as its legacy auto-navigation until some session
    calls ``st.navigation``; a deep link (e.g. ``/nap``) opened first on a fresh server then runs the page file alone.
    That legacy navigation registers the entry script itself as a page, which ours never does: if so, switch the
    legacy mode off and rerun, so app.py runs and resolves the same URL. Under AppTest (which re-enters the legacy
    mode before every run and runs only the page) the sidebar is drawn in place, so tests see the real workspace.
    """
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    pages = ctx.pages_manager.get_pages().values() if ctx else []
    if not any(
        Path(str(page.get("script_path", ""))).name == "app.py" for page in pages
    ):
        return  # app.py's navigation is in charge
    if config.get_option("global.appTest"):
        sidebar_workspace()  # a rerun would drop a clicked button's value in AppTest
        return
    PagesManager.uses_pages_directory = False
    st.rerun()


def workspace() -> Workspace:
    return st.session_state.get("workspace", Workspace())


# Widgets whose values a page keeps when the user leaves it and comes back (Streamlit forgets a widget's state
# when a run does not draw it): every key of these pages' prefixes and every parameter slider ("page:method:param"),
# except the action widgets (buttons, uploads, downloads), whose values cannot be set.
KEPT_PREFIXES = (
    "nap_",
    "bs_",
    "line_",
    "heatmap_",
    "bg_",
    "compare",
    "tune_",
    "upload_",
    "primer_",
    "ab_",
    "lecture_",
)
ACTIONS = {
    "bg_train",
    "bg_control",
    "compare_redraw",
    "heatmap_train",
    "heatmap_csv",
    "tune_all",
    "tune_apply",
    "tune_apply_loaded",
    "tune_download",
    "tune_one",
    "tune_stop",
    "tune_upload",
    "upload_files",
    "lecture_previous",
    "lecture_next",
}


def kept(key: object) -> bool:
    """Whether ``key`` is a value widget whose state survives leaving its page (see ``KEPT_PREFIXES``)."""
    return (
        isinstance(key, str)
        and (key.startswith(KEPT_PREFIXES) or key.count(":") == 2)
        and key not in ACTIONS
        and not key.startswith("reset_")
    )


def keep_widget_state(prefix: str = "") -> None:
    """Re-assign every kept widget value (those whose key starts with ``prefix``), so that Streamlit keeps it while
    its page, or the part of a page that draws it, is not shown."""
    for key in [k for k in st.session_state if kept(k) and k.startswith(prefix)]:
        st.session_state[key] = st.session_state[key]


def reset_button(page: str, prefixes: tuple[str, ...]) -> None:
    """A button that puts the page's widgets back to their defaults (the papers' for the workspace's benchmark):
    it forgets every widget state whose key starts with one of ``prefixes``."""

    def reset() -> None:
        for key in [
            k for k in st.session_state if isinstance(k, str) and k.startswith(prefixes)
        ]:
            del st.session_state[key]

    st.button(
        "↺ Reset to paper defaults",
        key=f"reset_{page}",
        on_click=reset,
        help="Every control of this page back to its default: the paper's value for this benchmark where the paper "
        "gives one (λ follows the chosen base method), OOD Lab's otherwise.",
    )


def _link_value(text: str) -> int | float | str | list[str]:
    """A deep-link value as its widget expects it: ``3`` → int, ``0.4`` → float, ``a|b`` → list, else text."""
    if "|" in text:
        return [part for part in text.split("|") if part]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def _apply_link() -> None:
    """A deep link sets the workspace (``?model=…&id=…&ood=a,b``) and any kept widget (``?nap_base=NAP-ReAct&
    nap_x:nap-react:lambda=0.4``), once per distinct link."""
    params = st.query_params
    link = tuple(sorted((k, params.get(k)) for k in params if k != "present"))
    if not link:  # the same link, clicked again later, applies again
        st.session_state["_link_applied"] = None
        return
    if st.session_state.get("_link_applied") == link:
        return
    st.session_state["_link_applied"] = link
    if {"model", "id", "ood"} & set(params):
        current = workspace()
        st.session_state["workspace"] = Workspace(
            params.get("model", current.model),
            params.get("id", current.id_dataset),
            tuple(
                filter(
                    None, params.get("ood", ",".join(current.ood_datasets)).split(",")
                )
            ),
        )
    for key, value in link:
        if kept(key):
            st.session_state[key] = _link_value(value)


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


def presenting() -> bool:
    """Whether presentation mode is on (the sidebar toggle, or ``?present=1`` in the link)."""
    if st.query_params.get("present") == "1" and "present" not in st.session_state:
        st.session_state["present"] = True
    return bool(st.session_state.get("present"))


PRESENTATION_CSS = """
<style>
html { font-size: 18px; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stMainMenu"],
[data-testid="stToolbarActions"], [data-testid="stAppDeployButton"], [data-testid="stDecoration"],
[data-testid="stElementToolbar"] { display: none !important; }
.stMainBlockContainer { max-width: 100% !important; padding: 3.5rem 1.5rem 1rem !important; }
[data-testid="stImage"] img { min-width: 96px; image-rendering: pixelated; }
h1 { font-size: 2.1rem !important; }
</style>
"""


def presentation_style() -> None:
    """Large type and thumbnails, no sidebar or toolbars, the full width of a 1280×720 screen."""
    # A constant style sheet: no user data reaches the browser as HTML.
    st.html(PRESENTATION_CSS)


def sidebar_workspace() -> None:
    """Model, ID set and OOD sets, kept in ``st.session_state['workspace']`` (a deep link can preset them); every
    page's kept widget values are carried over first."""
    keep_widget_state()
    _apply_link()
    current = workspace()
    with st.sidebar:
        st.header("Workspace")
        try:
            models, datasets = catalog.models(), catalog.datasets()
        except OODLabError as exc:
            st.error(str(exc))
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
        st.toggle(
            "Presentation mode",
            key="present",
            help="For a lecture at 1280×720: large type and thumbnails, pages in a top bar, no sidebar or toolbars. "
            "Leave it with the button at the bottom of each page, or link with ?present=1.",
        )


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
        "OpenOOD benchmarks appear once their image lists are under the data root (see README).",
    )
    absent = [b for b in benchmarks.BENCHMARKS.values() if b.name not in ready]
    if absent:
        st.caption(
            "Not available yet: "
            + ", ".join(
                f"{b.name} ({len(benchmarks.missing(b))} files missing)" for b in absent
            )
            + " — `python -m ood_core report --benchmark <name>` lists them."
        )


def colour(name: str) -> str:
    """Colour of a set label in figures: ID blue, each OOD set its own, anything else (pseudo-OOD) grey."""
    ws = workspace()
    if name in ("ID", ws.id_dataset):
        return ID_COLOUR
    if name in ws.ood_datasets:  # each OOD set keeps its colour on every page
        return OOD_COLOURS[ws.ood_datasets.index(name) % len(OOD_COLOURS)]
    return PSEUDO_OOD_COLOUR


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


def require_features() -> LoadedWorkspace:
    """The workspace's cached features, or a pointer to the Setup page (and stop) if anything is missing."""
    try:
        features = cached_workspace(workspace())
    except OODLabError as exc:
        st.error(str(exc))
        st.stop()
    if features is None or not features.ood:
        st.info(
            "This page reads cached features. Prepare them on the Setup page first (one click)."
        )
        st.page_link("pages/setup.py", label="Go to Setup", icon=":material/tune:")
        st.stop()
    for f in [features.id_test, *features.ood.values()]:
        for note in f.notes:
            st.warning(note)
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


def intro(text: str, method: Method) -> None:
    """The page's plain-language opening, the method's formula and its paper."""
    st.markdown(text)
    st.latex(method.formula)
    st.caption(
        f"Paper: [{method.paper.title}]({method.paper.url}) ({method.paper.venue}). Scores: higher = more ID."
    )


def _shown_params(
    method: Method, skip: tuple[str, ...], only: tuple[str, ...] | None
) -> list:
    """The parameters that get a widget: numbers, a block, a block set (minus ``skip``, within ``only``)."""
    return [
        p
        for p in method.params
        if p.name not in skip
        and (only is None or p.name in only)
        and (p.numeric or p.kind in ("block", "blocks"))
    ]


def _widget_default(p, method: Method, blocks: list[str], benchmark: str | None):
    """A parameter widget's initial value: the paper's for ``benchmark`` (OOD Lab's on the demo)."""
    default = p.default_for(benchmark)
    if p.kind == "block":
        return default if default in blocks else blocks[-1]
    if p.kind == "blocks":
        return block_set(method.name, default, blocks)
    return (int if p.kind == "int" else float)(default)


def _as_value(p, widget_value, blocks: list[str]):
    """What a method receives from its widget's value (a block set is joined; an empty one is the last block)."""
    if p.kind == "blocks":
        return BLOCK_SEPARATOR.join(widget_value or blocks[-1:])
    return widget_value


def param_controls(
    method: Method,
    blocks: list[str],
    key: str,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    benchmark: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    """One widget per parameter of ``method``, generated from its ``Param`` records (sliders for numbers, a select
    box for the block, a multiselect for a block set); defaults are the papers' for ``benchmark`` (OOD Lab's on the
    demo)."""
    values = {}
    for p in _shown_params(method, skip, only):
        widget_key = f"{key}:{method.name}:{p.name}"
        label = (labels or {}).get(p.name, p.name)
        default = _widget_default(p, method, blocks, benchmark)
        if p.kind == "block":
            chosen = st.selectbox(
                label, blocks, index=blocks.index(default), key=widget_key, help=p.help
            )
        elif p.kind == "blocks":
            chosen = st.multiselect(
                label, blocks, default=default, key=widget_key, help=p.help
            )
        else:
            cast = int if p.kind == "int" else float
            chosen = st.slider(
                label,
                cast(p.low),
                cast(p.high),
                default,
                cast(p.step),
                key=widget_key,
                help=p.help,
            )
        values[p.name] = _as_value(p, chosen, blocks)
    return values


def param_values(
    method: Method,
    blocks: list[str],
    key: str,
    benchmark: str | None = None,
    state: Mapping | None = None,
) -> dict:
    """The values ``param_controls`` would return, read from the widgets' kept ``state`` (the session's by default;
    a widget without one gives its default) without drawing them."""
    state = st.session_state if state is None else state
    return {
        p.name: _as_value(
            p,
            state.get(
                f"{key}:{method.name}:{p.name}",
                _widget_default(p, method, blocks, benchmark),
            ),
            blocks,
        )
        for p in _shown_params(method, (), None)
    }


def param_defaults(
    method: Method, blocks: list[str], benchmark: str | None = None
) -> dict:
    """The values ``param_controls`` starts from (the papers' for ``benchmark``)."""
    return param_values(method, blocks, "", benchmark, state={})


def histogram_figure(
    histogram: pd.DataFrame, title: str, x_title: str = "score"
) -> go.Figure:
    """Overlaid density histograms from server-side bins (``ood_core.tables.binned``)."""
    figure = go.Figure()
    for name, part in histogram.groupby("set", sort=False):
        figure.add_bar(
            x=part["centre"],
            y=part["density"],
            width=part["right"] - part["left"],
            name=name,
            marker_color=colour(name),
            opacity=0.55,
        )
    figure.update_layout(
        barmode="overlay",
        title=title,
        xaxis_title=x_title,
        yaxis_title="density",
        height=330,
        margin={"t": 40, "b": 30},
    )
    return figure


def metric_cards(
    table: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    reference_label: str = "base",
    export: str | None = None,
) -> None:
    """One AUROC/FPR95 card per OOD set, with the delta against ``reference`` rows of the same ood_set; a delta
    against a reference at chance level is grey (it is not progress). ``export`` names a PNG download of the
    cards (for slides)."""
    rows = table.set_index("ood_set")
    bases = None if reference is None else reference.set_index("ood_set")["AUROC"]
    columns = st.columns(len(rows))
    for column, (name, row) in zip(columns, rows.iterrows()):
        delta, colour_mode = None, "normal"
        if bases is not None:
            base = bases[name]
            delta = f"{row['AUROC'] - base:+.2f} vs {reference_label}"
            if at_chance(base) or at_chance(row["AUROC"]):
                delta += " (at chance)"
                colour_mode = "off"
        column.metric(
            f"AUROC · {name}",
            f"{row['AUROC']:.2f}",
            delta,
            delta_color=colour_mode,
            help=AUROC_HELP,
        )
        column.caption(f"FPR95 {row['FPR95']:.2f} %")
    if export:
        label = table["method"].iloc[0] if "method" in table else export
        st.download_button(
            "Cards (PNG)",
            cards_png(table, label),
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


BADGES = {
    True: ":green-badge[:material/check: as in the paper]",
    False: ":orange-badge[:material/warning: unlike the paper]",
    None: ":gray-badge[:material/info: note]",
}


def observations(items: list[Observation], key: str) -> None:
    """The page's "what you should see here" block: sentences generated from the current numbers, each badged as
    agreeing or disagreeing with the paper's claim, with one line on why a disagreement can happen."""
    with st.container(border=True, key=f"observations_{key}"):
        st.markdown(
            "**What you should see here** — generated from the numbers on this page"
        )
        for item in items:
            line = f"{BADGES[item.agrees]} {item.text}"
            if item.agrees is False and item.why:
                line += f"  \n*Why this can happen:* {item.why}"
            st.markdown(line)
