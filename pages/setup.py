"""Setup: prepare the workspace's features, see the cache, read the first results."""

from __future__ import annotations

import pages.ui.preload  # noqa: F401  (first: a fresh server runs deep-linked pages without app.py)

# isort: split

import pandas as pd
import streamlit as st

from ood_core import observations as notes
from ood_core.doctor import facts
from ood_core.engine.cache import FeatureCache
from ood_core.engine.features import (
    feature_set,
    forget_datasets,
    lookup_feature_set,
    model_named,
)
from ood_core.errors import OODLabError
from ood_core.inputs import catalog, config
from ood_core.scores import get_method
from ood_core.tables import evaluate
from ood_core.training.finetune import delete_finetuned
from ood_core.workspace import cached_workspace
from pages.ui.add_model import add_model_form, probe_table
from pages.ui.boundary import callback
from pages.ui.cards import observations
from pages.ui.sections import prose
from pages.ui.shell import run_page
from pages.ui.sidebar import absent_benchmarks, workspace
from pages.ui.text import plain


@st.cache_resource(show_spinner=False)
def install_facts() -> dict[str, str]:
    """``ood_core.doctor.facts()``, once per server (they hold for the process)."""
    return facts()


def main() -> None:
    st.title("Setup")
    prose(
        "OOD Lab runs the classifier **once** over the in-distribution (ID) and OOD images and caches compact per-layer "
        "activation statistics (per-channel max, mean and L2 norm of every probed block, plus logits and penultimate "
        "features). Every page then scores, plots and tunes detectors from that cache in milliseconds."
    )

    FIRST_METHODS = ("msp", "maxlogit", "energy", "nap")
    ws = workspace()
    cache = FeatureCache()

    def feature_targets() -> list[tuple[str, str | None]]:
        """ID test, ID train (train statistics) and its jigsaw version (block selection), then each OOD set."""
        return ws.sets()

    def dataset_table(targets) -> pd.DataFrame:
        rows = []
        for name, split in targets:
            spec = catalog.get_dataset(name)
            cached, state = lookup_feature_set(ws.model, name, split, cache)
            rows.append(
                {
                    "dataset": f"{name}:{split}" if split else name,
                    "role": "ID"
                    if name == ws.id_dataset
                    else "pseudo-OOD"
                    if "@jigsaw" in name
                    else "OOD",
                    "images": len(cached) if cached is not None else None,
                    "unreadable (skipped)": cached.meta.get("skipped", 0)
                    if cached is not None
                    else None,
                    "cached": cached is not None,
                    "state": state
                    if not state.startswith("corrupt")
                    else f"{state} — Prepare rebuilds it",
                    "provenance": spec.provenance,
                }
            )
        return pd.DataFrame(rows)

    def prepare(targets) -> None:
        """Train the model if needed, then extract every missing set, with live progress; then what happened."""
        notes: list[str] = []
        with st.status("Preparing features…", expanded=True) as status:
            bar = st.progress(0.0, text="model")
            forget_datasets()  # rescan folders: files may have been added since the last listing
            model_named(
                ws.model,
                lambda done, total: bar.progress(
                    done / total, text=f"training {ws.model}: epoch {done}/{total}"
                ),
            )
            for name, split in targets:
                label = f"{name} ({split})" if split else name  # no ':': markdown emoji
                features = feature_set(
                    ws.model,
                    name,
                    split,
                    cache=cache,
                    progress=lambda done, total, label=label: bar.progress(
                        done / total, text=f"{label}: {done}/{total} images"
                    ),
                )
                notes.extend(features.notes)
                if features.meta.get("skipped"):
                    notes.append(
                        f"{label}: {features.meta['skipped']} unreadable images skipped "
                        f"(e.g. {', '.join(features.meta['skipped_names'][:3])})"
                    )
            status.update(label="Features ready", state="complete", expanded=False)
        for note in notes:
            st.warning(plain(note, limit=600))

    try:
        st.subheader(f"Workspace: model `{ws.model}`, ID `{ws.id_dataset}`")
        st.caption(plain(catalog.get_model(ws.model).description, limit=600))
        targets = feature_targets()
        if st.button(
            "Prepare features",
            type="primary",
            key="prepare",
            help="Extracts every missing set of the workspace; cached sets are reused. The demo model's weights ship "
            "with OOD Lab (it is retrained, ≈30 s, only if they are missing); a registered model loads its checkpoint.",
        ):
            prepare(targets)
        table = dataset_table(targets)
        missing = int((~table["cached"]).sum())
        st.caption(
            f"{missing} of {len(table)} sets still to extract: press **Prepare features**."
            if missing
            else "All features cached."
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            placeholder="—",  # not extracted yet
            column_config={
                "dataset": st.column_config.TextColumn(width="medium"),
                "role": st.column_config.TextColumn(width="small"),
                "state": st.column_config.TextColumn(width="medium"),
                "provenance": st.column_config.TextColumn(width="large"),
            },
        )
        absent_benchmarks()

        st.subheader("First results")
        features = cached_workspace(ws, cache)
        if features is None or not features.ood:
            st.info(
                "Prepare the features (button above) and pick at least one OOD set to see results."
            )
        else:
            st.metric("ID test accuracy", f"{features.accuracy:.2f}%")
            results = evaluate(
                features, [(get_method(name), {}) for name in FIRST_METHODS]
            )
            st.caption(
                "AUROC in % of four minimal scores (every method is on the Compare page). ID = positive class; every "
                "score is 'higher = more ID', so 50 is chance and below 50 the score ranks OOD above ID."
            )
            auroc = results.pivot(
                index="method", columns="ood_set", values="AUROC"
            ).loc[results.method.unique()]
            st.dataframe(
                auroc[[*ws.ood_datasets, *(["mean"] if "mean" in auroc else [])]].round(
                    2
                ),
                width="stretch",
            )
            if "mean" in auroc:
                observations(notes.best_methods(results), "setup")
            st.caption(
                "New to these numbers? The [Primer](/primer) explains AUROC, FPR95 and the rest; the "
                "[Guided lecture](/lecture) walks through the five ideas."
            )
            with st.expander(
                "All metrics (AUROC, FPR95 — lower is better —, AUPR-In, AUPR-Out)"
            ):
                st.dataframe(results.round(2), hide_index=True, width="stretch")
            st.download_button(
                "Download CSV",
                results.to_csv(index=False),
                "ood_lab_results.csv",
                "text/csv",
            )
    except OODLabError as exc:
        st.error(str(exc))

    with st.expander("Where this model is probed"):
        model = model_named(ws.model)
        if model.module is None:
            st.caption(
                "A synthetic workspace: its statistics are generated, not probed."
            )
        else:
            probe_table(model)

    with st.expander("About this install"):
        st.caption(
            "What the kernels and the model run on (`python -m ood_core doctor` prints the same). On a shared "
            "server, the threading layer should be `tbb` (README, *Benchmarks*)."
        )
        st.dataframe(
            pd.DataFrame(install_facts().items(), columns=["", "value"]),
            hide_index=True,
            width="stretch",
        )

    with st.expander("Bring your model: torchvision, timm or your own file"):
        add_model_form()

    with st.expander("Add a folder of images as an OOD dataset"):
        st.caption(
            f"The folder must lie inside the data root `{config.data_root()}` (set `OOD_LAB_DATA_ROOT`); "
            "paths outside it are refused. It is added to the registry file and appears in the sidebar."
        )
        new_name = st.text_input("Dataset name", key="new_dataset_name")
        new_folder = st.text_input(
            "Folder, relative to the data root", key="new_dataset_folder"
        )
        if st.button("Add dataset", key="add_dataset"):
            try:
                added = catalog.add_folder_dataset(new_name, new_folder)
                st.success(
                    "Added the dataset below; pick it under OOD datasets in the sidebar."
                )
                st.code(added.name, language=None)
            except OODLabError as exc:
                st.error("The folder was not added:")
                st.code(
                    str(exc), language=None
                )  # user-typed text, shown verbatim (never as Markdown)

    problems = catalog.problems()
    if problems:
        st.warning(
            f"{len(problems)} registry entr{'y is' if len(problems) == 1 else 'ies are'} broken and left out:"
        )
        st.dataframe(
            pd.DataFrame(
                [
                    {"entry": f"{p.section}.{p.name}", "problem": p.reason}
                    for p in problems
                ]
            ),
            hide_index=True,
            width="stretch",
        )

    st.subheader("Cache inventory")
    entries = cache.entries()
    st.caption(
        f"{len(entries)} entries in `{cache.root}`, {sum(e.bytes for e in entries) / 1e6:.1f} MB"
    )
    if entries:
        inventory = pd.DataFrame(
            [
                {
                    "model": e.model,
                    "entry": e.dataset,
                    "kind": e.kind,
                    "rows": e.rows,
                    "MB": round(e.bytes / 1e6, 2),
                    "created": e.created,
                    "status": e.status,
                }
                for e in entries
            ]
        )
        st.dataframe(inventory, hide_index=True, width="stretch")
        paths = {f"{e.model}/{e.dataset}": e.path for e in entries}

        @callback
        def delete_selected() -> None:
            try:
                for name in st.session_state["doomed"]:
                    cache.delete(paths[name])
            except OODLabError as exc:
                st.session_state["delete_error"] = str(exc)
            st.session_state["doomed"] = []

        st.multiselect("Entries to delete", list(paths), key="doomed")
        st.button("Delete selected", key="delete", on_click=delete_selected)
        if "delete_error" in st.session_state:
            st.error(st.session_state.pop("delete_error"))

    tuned = (
        sorted(catalog.finetuned_folder().glob("*.pt"))
        if catalog.finetuned_folder().is_dir()
        else []
    )
    if tuned:
        st.subheader("Fine-tuned models")
        st.dataframe(
            pd.DataFrame(
                [
                    {"model": p.stem, "MB": round(p.stat().st_size / 1e6, 2)}
                    for p in tuned
                ]
            ),
            hide_index=True,
            width="stretch",
        )

        @callback
        def delete_models() -> None:
            try:
                for name in st.session_state["doomed_models"]:
                    delete_finetuned(name)
            except OODLabError as exc:
                st.session_state["delete_error"] = str(exc)
            st.session_state["doomed_models"] = []

        st.multiselect(
            "Fine-tuned models to delete", [p.stem for p in tuned], key="doomed_models"
        )
        st.button("Delete selected models", key="delete_models", on_click=delete_models)


run_page(main)
