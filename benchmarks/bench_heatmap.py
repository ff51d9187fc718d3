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
from ood_core.engine.features import model_named
from ood_core.metrics import metrics_table
from ood_core.scores import get_method
from ood_core.scores.heatmap import HEATMAP
from ood_core.tables import before_after
from ood_core.training.background import BackgroundSettings
from ood_core.training.finetune import background_fine_tune, report
from ood_core.workspace import Workspace, load_workspace


def auroc_table(table: pd.DataFrame) -> str:
    wide = table.pivot(index="method", columns="ood_set", values="AUROC")
    columns = list(table["ood_set"].unique())
    return wide.loc[table["method"].unique(), columns].round(1).to_string()


def decoder_section(features) -> None:
    start = time.perf_counter()
    state = HEATMAP.fit_state(
        features.train_data, outliers="@jigsaw3", epochs=40
    )  # fresh: not the cache
    seconds = time.perf_counter() - start
    h = state.history
    print(
        f"decoder: {h['id_samples']} ID + {h['oe_samples']} jigsaw outlier images, "
        f"{h['epochs_run']} epochs (best {h['best_epoch']}), {seconds:.1f} s including image "
        f"loading (goal < 120 s)"
    )
    results = {
        "Heatmap (decoder)": (
            HEATMAP.score_fn(features.id_test, state, "@jigsaw3", 40),
            {
                n: HEATMAP.score_fn(f, state, "@jigsaw3", 40)
                for n, f in features.ood.items()
            },
        )
    }
    for name in ("msp", "energy", "nap"):
        method = get_method(name)
        results[method.label] = features.scores(method)
    print(auroc_table(metrics_table(results)))


def background_section(features) -> None:
    methods = [get_method(m) for m in ("energy", "nap", "featurenorm")]
    for alpha in (0.0, 0.1, 1.0):
        settings = BackgroundSettings(alpha=alpha)
        name = background_fine_tune("demo", "digits", settings)
        after = load_workspace(Workspace(name))
        print(
            f"\n{name}: fine-tuned in {report(name)['seconds']:.1f} s; ID accuracy "
            f"{features.accuracy:.2f}% -> {after.accuracy:.2f}%"
        )
        print(auroc_table(before_after(features, after, methods)))


def main() -> None:
    model_named("demo")
    features = load_workspace(Workspace())
    decoder_section(features)
    background_section(features)


if __name__ == "__main__":
    main()
