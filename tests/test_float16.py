"""float16 block statistics: stored as float16 on disk, read as float32, their own cache entry, and the metrics
barely move (benchmarks/bench_float16.py measures every method)."""

from __future__ import annotations

import numpy as np

from ood_core.engine.extract import ExtractionSettings
from ood_core.engine.features import feature_set
from ood_core.metrics import ood_metrics
from ood_core.scores import get_method


def test_float16_statistics_are_stored_half_and_read_as_float32(
    demo_model, monkeypatch
):
    full = feature_set("demo", "noise")
    half = feature_set("demo", "noise", settings=ExtractionSettings(float16_stats=True))
    assert half.root != full.root  # its own entry
    stored = np.load(half.root / "blocks" / "layer4.0" / "max.npy", mmap_mode="r")
    assert stored.dtype == np.float16
    assert half["blocks/layer4.0/max"].dtype == np.float32
    np.testing.assert_array_equal(
        half["blocks/layer4.0/max"],
        full["blocks/layer4.0/max"].astype(np.float16).astype(np.float32),
    )
    np.testing.assert_array_equal(
        half["penultimate"], full["penultimate"]
    )  # only statistics are rounded
    monkeypatch.setenv("OOD_LAB_FLOAT16_STATS", "1")
    assert (
        feature_set("demo", "noise").root == half.root
    )  # the environment picks float16 entries everywhere
    test = feature_set("demo", "digits", "test")
    nap = get_method("nap")
    monkeypatch.delenv("OOD_LAB_FLOAT16_STATS")
    exact = ood_metrics(
        nap.score(feature_set("demo", "digits", "test")), nap.score(full)
    )["AUROC"]
    rounded = ood_metrics(nap.score(test), nap.score(half))["AUROC"]
    assert abs(exact - rounded) < 0.05


def test_bfloat16_autocast_on_cpu_keeps_float32_statistics_close_to_float32(demo_model):
    from ood_core.engine.extract import MemorySink, extract
    from ood_core.engine.features import dataset_images

    images, _ = dataset_images("noise")
    images = images.with_transform(demo_model.transform)
    runs = {}
    for amp in ("off", "bf16"):
        sink = MemorySink()
        report = extract(
            demo_model.module,
            demo_model.probes,
            images,
            sink,
            ExtractionSettings(amp=amp),
        )
        runs[amp] = (sink.arrays, report)
    exact, rounded = runs["off"][0], runs["bf16"][0]
    assert runs["bf16"][1]["amp"] == "torch.bfloat16" and runs["off"][1]["amp"] == "off"
    for name in ("logits", "penultimate", "blocks/layer4.0/max"):
        assert rounded[name].dtype == np.float32
        scale = np.abs(exact[name]).max()
        assert (
            np.abs(rounded[name] - exact[name]).max() < 0.05 * scale
        )  # bfloat16 has an 8-bit mantissa
        assert not np.array_equal(
            rounded[name], exact[name]
        )  # the autocast did run in bfloat16
