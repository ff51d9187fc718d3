"""Setup's "Bring your model" form: everything a registry entry can say, checked by building the model, loading its
checkpoint and one dry forward pass before anything is registered; the probes are shown first."""

from __future__ import annotations

import tomllib

import pandas as pd
import streamlit as st

from ood_core.errors import OODLabError
from ood_core.inputs import catalog, config
from ood_core.inputs.models import LoadedModel
from ood_core.inputs.registry_file import BENCHMARKS, classification_architectures

from .text import plain

SOURCES = {
    "torchvision": "a torchvision classification architecture",
    "timm": "a timm model (timm:NAME)",
    "your file": "a class or function in your own file (factory), imported as your code",
}
NORMALISATIONS = {
    "ImageNet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "CIFAR-10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR-100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "0.5 / 0.5": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none (0 / 1)": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def probe_table(model: LoadedModel) -> None:
    """A model's probes as Setup shows them (the same table as ``python -m ood_core probes``)."""
    probes = model.probes
    st.caption(
        f"{len(probes.blocks)} probes ({probes.kind}); head `{probes.head}` ({probes.penultimate} features → "
        f"{probes.classes} classes). Each probe stores the per-channel max, mean and L2 norm of ReLU(map); ✓ marks "
        "the map the global pool reads (NAP's and FeatureNorm's default)."
    )
    st.dataframe(pd.DataFrame(probes.table()), hide_index=True, width="stretch")


def _kwargs(text: str) -> dict:
    try:
        return tomllib.loads(text or "")
    except tomllib.TOMLDecodeError as exc:
        raise OODLabError(
            f"kwargs: {exc} (one `name = value` per line, TOML)"
        ) from None


def _entry(source: str, values: dict) -> dict:
    mean, std = NORMALISATIONS[values["normalisation"]]
    entry: dict = {
        "weights": values["weights"].strip(),
        "num_classes": int(values["classes"]),
        "input_size": int(values["size"]),
        "mean": list(mean),
        "std": list(std),
        "probes": values["probes"],
    }
    if source == "torchvision":
        entry["arch"] = values["arch"]
    elif source == "timm":
        entry["arch"] = f"timm:{values['timm'].strip()}"
    else:
        entry["factory"] = values["factory"].strip()
    kwargs = _kwargs(values["kwargs"])
    if kwargs:
        entry["kwargs"] = kwargs
    if values["resize"]:
        entry["resize"] = int(values["resize"])
    if values["id_dataset"] != "—":
        entry["id_dataset"] = values["id_dataset"]
    if values["benchmark"] != "—":
        entry["benchmark"] = values["benchmark"]
    return entry


def add_model_form() -> None:
    """The form; ``Check`` builds and dry-runs the model and shows its probes, ``Add`` registers it once it works."""
    st.caption(
        f"Paths are relative to the data root `{plain(config.data_root())}`. Weights always come from your "
        "checkpoint (a state_dict as saved, nested under state_dict/model/net, `module.` prefixes, or "
        ".safetensors), never from a hub. A factory file is imported and run as your own code."
    )
    source = st.radio(
        "Source",
        list(SOURCES),
        horizontal=True,
        key="new_model_source",
        format_func=lambda key: f"{key}: {SOURCES[key]}",
    )
    ids = ["—", *(n for n, d in catalog.datasets().items() if d.in_distribution)]
    with st.form("new_model_form"):
        left, middle, right = st.columns(3)
        values = {"source": source}
        values["name"] = left.text_input("Model name", key="new_model_name")
        if source == "torchvision":
            architectures = classification_architectures()
            values["arch"] = left.selectbox(
                "Architecture",
                architectures,
                index=architectures.index("resnet18"),
                key="new_model_arch",
            )
        elif source == "timm":
            values["timm"] = left.text_input(
                "timm model", placeholder="convnext_tiny", key="new_model_timm"
            )
        else:
            values["factory"] = left.text_input(
                "Factory",
                placeholder="models/densenet.py:DenseNet3",
                key="new_model_factory",
            )
        values["kwargs"] = left.text_area(
            "Arguments (kwargs, TOML)",
            placeholder="depth = 100",
            height=80,
            key="new_model_kwargs",
        )
        values["weights"] = middle.text_input(
            "Checkpoint",
            placeholder="weights/densenet100_cifar10.pth",
            key="new_model_weights",
        )
        values["classes"] = middle.number_input(
            "Classes", 2, 100_000, 10, key="new_model_classes"
        )
        values["size"] = middle.number_input(
            "Input size (px)", 8, 1024, 32, key="new_model_size"
        )
        values["resize"] = middle.number_input(
            "Resize before the centre crop (0: none)",
            0,
            2048,
            0,
            key="new_model_resize",
        )
        values["normalisation"] = right.selectbox(
            "Normalisation (mean / std)",
            list(NORMALISATIONS),
            index=1,
            key="new_model_normalisation",
        )
        values["probes"] = right.radio(
            "Probes",
            ["default", "all"],
            horizontal=True,
            help="default: where the papers look for this family (at most 24, the pre-pool map always); "
            "all: every map a module makes once. Name probes by hand in the registry file.",
            key="new_model_probes",
        )
        values["id_dataset"] = right.selectbox("ID dataset", ids, key="new_model_id")
        values["benchmark"] = right.selectbox(
            "Paper defaults of", ["—", *BENCHMARKS], key="new_model_benchmark"
        )
        check = st.form_submit_button(
            "Check the model and show its probes", key="new_model_check"
        )
        add = st.form_submit_button(
            "Add it to the registry", type="primary", key="new_model_add"
        )
    if not (check or add):
        return
    try:
        entry = _entry(source, values)
        name = values["name"].strip()
        loaded = (
            catalog.add_model(name, entry) if add else catalog.check_model(name, entry)
        )
    except OODLabError as exc:
        st.error(
            "Not added: " + plain(exc, limit=600) if add else plain(exc, limit=600)
        )
        return
    if add:
        st.success(
            f"Registered {plain(name)}: pick it under Model in the sidebar, then Prepare features."
        )
    else:
        st.success("The model builds, loads its checkpoint and runs. Its probes:")
    probe_table(loaded)
