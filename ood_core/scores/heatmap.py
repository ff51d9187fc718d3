"""Heatmap-based OOD detection (seed 003: Hornauer et al., WACV 2023) as a detector record.

The fit trains a decoder ``G([z', onehot(ŷ)]) → h = tanh(·)`` on ID training images (target: the image itself) and
outlier-exposure images (target: the nearest ID training image of the same predicted class), see
``ood_core.training.decoder``. The score needs only the cached penultimate features and logits:
``S(x) = −mean_pixels max_channels |h|`` (the paper's score, negated so that higher = more ID). Training takes about
half a minute on the demo, so the workspace fits it only when asked (``cost = "training"``).
"""

from __future__ import annotations

import numpy as np

from ..rows import sample_rows
from ..training.decoder import DecoderSettings, DecoderState, train_decoder
from .method import Fit, Method, Param, TrainData, arxiv

MAX_IMAGES = 2000
DEFAULT_OUTLIERS = (
    "@jigsaw3"  # relative to the ID dataset: its jigsaw-shuffled training images
)


SEEDS = (
    0,
    1,
    2,
)  # the page trains the decoder once per seed: its score is reported as mean ± sd


def fit_decoder(
    train: TrainData,
    outliers: str = DEFAULT_OUTLIERS,
    epochs: int = 40,
    seed: int = 0,
    progress=None,
) -> DecoderState:
    """Train the decoder on ≤ 2,000 seeded images of the ID train set and of the ``outliers`` set (``seed`` picks
    the images, the initialisation and the batch order)."""
    settings = DecoderSettings(epochs=int(epochs), seed=int(seed))
    oe = train.other(outliers)
    id_rows = sample_rows(len(train["labels"]), MAX_IMAGES, settings.seed)
    oe_rows = sample_rows(len(oe["labels"]), MAX_IMAGES, settings.seed + 1)
    trained = train_decoder(
        train.pixels(id_rows),
        train["penultimate"][id_rows],
        train["logits"][id_rows],
        oe.pixels(oe_rows),
        oe["penultimate"][oe_rows],
        oe["logits"][oe_rows],
        settings,
        progress,
    )
    trained.history["outliers"] = outliers
    return DecoderState.of(trained)


def heatmap_score(
    state: DecoderState, penultimate: np.ndarray, logits: np.ndarray, batch: int = 512
) -> np.ndarray:
    """``S(x) = −mean_pixels max_channels |h|`` [N] from cached features only."""
    trained = state.trained
    scores = [
        -np.abs(
            trained.heatmaps(penultimate[i : i + batch], logits[i : i + batch], batch)
        )
        .max(1)
        .mean((1, 2))
        for i in range(0, len(penultimate), batch)
    ]
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


HEATMAP_DECODER = Fit(
    name="heatmap-decoder",
    fn=fit_decoder,
    needs=("penultimate", "logits", "labels", "pixels"),
    state=DecoderState,
    params=("outliers", "epochs", "seed"),
)

HEATMAP = Method(
    name="heatmap",
    label="Heatmap (decoder)",
    family="training",
    needs=("penultimate", "logits"),
    formula=r"S(x)=-\frac{1}{HW}\sum_{i,j}\max_c |h_{c,ij}|,\quad h=\tanh G\big([z',\,\mathrm{onehot}(\hat y)]\big)",
    paper=arxiv(
        "Heatmap-based Out-of-Distribution Detection", "WACV 2023", "2211.08115"
    ),
    score_fn=lambda f, state, outliers, epochs, seed: heatmap_score(
        state, f["penultimate"], f["logits"]
    ),
    params=(
        Param(
            "outliers",
            DEFAULT_OUTLIERS,
            kind="choice",
            help="Outlier-exposure set the decoder learns to paint; '@jigsaw3' = jigsaw-shuffled ID training "
            "images, disjoint from every test OOD set. An OOD set chosen here is left out of its metrics.",
        ),
        Param(
            "epochs",
            40,
            1,
            80,
            1,
            "Training epochs at most (early stopping on a held-out 10%).",
            kind="int",
        ),
        Param(
            "seed",
            0,
            0,
            99,
            1,
            "Seed of the training run (images drawn, initialisation, batch order).",
            kind="int",
        ),
    ),
    fit=HEATMAP_DECODER,
    cost="training",
)

METHODS = (HEATMAP,)
