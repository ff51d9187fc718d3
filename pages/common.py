"""Shared UI pieces: the sidebar workspace, cached lookups and the ID/OOD colour scheme. No OOD math here."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from ood_core import catalog
from ood_core.errors import OODLabError
from ood_core.pipeline import Workspace

ID_COLOUR = "#1f77b4"
OOD_COLOURS = px.colors.qualitative.Set2


def colour_of(dataset: str, workspace: Workspace) -> str:
    """ID is always blue; each OOD set keeps its own colour on every page."""
    if dataset == workspace.id_dataset:
        return ID_COLOUR
    return OOD_COLOURS[list(workspace.ood_datasets).index(dataset) % len(OOD_COLOURS)]


def workspace() -> Workspace:
    return st.session_state.get("workspace", Workspace())


def sidebar_workspace() -> None:
    """Model, ID set and OOD sets, kept in ``st.session_state['workspace']``."""
    current = workspace()
    with st.sidebar:
        st.header("Workspace")
        try:
            models, datasets = catalog.models(), catalog.datasets()
        except OODLabError as exc:
            st.error(str(exc))
            return
        names = list(models)
        model = st.selectbox(
            "Model",
            names,
            index=names.index(current.model) if current.model in names else 0,
            help="Registered models: the embedded demo and those in the registry file (see README).",
        )
        id_choices = [n for n, spec in datasets.items() if spec.in_distribution]
        default_id = models[model].default_id
        id_index = id_choices.index(default_id) if default_id in id_choices else 0
        id_dataset = st.selectbox(
            "ID dataset",
            id_choices,
            index=id_index,
            help="The model's training distribution.",
        )
        ood_choices = [n for n in datasets if n != id_dataset]
        ood = st.multiselect(
            "OOD datasets",
            ood_choices,
            default=[n for n in current.ood_datasets if n in ood_choices],
            help="Sets the detector should reject.",
            key="ood_sets",
        )
        st.session_state["workspace"] = Workspace(model, id_dataset, tuple(ood))
