"""Heatmap decoder and Local Background fine-tuning on the demo: training time, AUROC per OOD set, before/after.

1. Trains a fresh Heatmap-based OOD decoder (default settings, outlier exposure = jigsaw-shuffled digits:train,
   disjoint from every test OOD set) without the cache, timing it (goal < 2 min on 2 CPU cores), and prints its
   metrics next to MSP, Energy and NAP.
2. Fine-tunes the demo model with the Local Background loss for α ∈ {0 (control: plain fine-tuning), 0.1, 1}
   (k = 8, 3 epochs; reused from the cache when present), extracts it and prints ID accuracy and the AUROC of
   Energy, NAP and FeatureNorm before vs after.

Usage: python benchmarks/bench_heatmap.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ood_core.background import BackgroundSettings
from ood_core.evaluation import (
    accuracy,
    before_after,
    heatmap_scores,
    workspace_features,
)
from ood_core.finetuned import background_fine_tune, report
from ood_core.heatmap import DecoderSettings
from ood_core.metrics import metrics_table
from ood_core.pipeline import Workspace, prepare_model, train_set_decoder
from ood_core.scores import get_method


def auroc_table(table: pd.DataFrame) -> str:
    wide = table.pivot(index="method", columns="ood_set", values="AUROC")
    columns = list(table["ood_set"].unique())
    return wide.loc[table["method"].unique(), columns].round(1).to_string()


def decoder_section(features) -> None:
    start = time.perf_counter()
    decoder = train_set_decoder(features.id_train, features.jigsaw, DecoderSettings())
    seconds = time.perf_counter() - start
    h = decoder.history
    print(
        f"decoder: {h['id_samples']} ID + {h['oe_samples']} jigsaw outlier images, "
        f"{h['epochs_run']} epochs (best {h['best_epoch']}), {seconds:.1f} s including image "
        f"loading (goal < 120 s)"
    )
    results = {"Heatmap (decoder)": heatmap_scores(features, decoder)}
    for name in ("msp", "energy", "nap"):
        method = get_method(name)
        results[method.label] = features.scores(method)
    print(auroc_table(metrics_table(results)))


def background_section(features) -> None:
    methods = [get_method(m) for m in ("energy", "nap", "featurenorm")]
    for alpha in (0.0, 0.1, 1.0):
        settings = BackgroundSettings(alpha=alpha)
        name = background_fine_tune("demo", "digits", settings)
        after = workspace_features(Workspace(name))
        print(
            f"\n{name}: fine-tuned in {report(name)['seconds']:.1f} s; ID accuracy "
            f"{accuracy(features.id_test):.2f}% -> {accuracy(after.id_test):.2f}%"
        )
        print(auroc_table(before_after(features, after, methods)))


def main() -> None:
    prepare_model("demo")
    features = workspace_features(Workspace())
    decoder_section(features)
    background_section(features)


if __name__ == "__main__":
    main()
