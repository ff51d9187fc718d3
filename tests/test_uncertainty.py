"""Uncertainty of the metrics: DeLong's variance against the brute-force U-statistic, interval coverage and test size
by simulation, and the bootstrap's weighted kernel against metrics of the explicitly resampled scores."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score

from ood_core import metric_kernels
from ood_core.metrics import (
    AUROC_SE,
    FPR95_OOD,
    IDReference,
    auroc_interval,
    auroc_mean_interval,
    bootstrap_intervals,
    bootstrap_metrics,
    delong_components,
    holm,
    paired_auroc,
    paired_auroc_per_set,
    paired_bootstrap,
)


def _brute_delong(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong variance from the full m×n kernel ψ (1 if ID > OOD, ½ if equal)."""
    psi = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    return psi.mean(), v10.var(ddof=1) / a.size + v01.var(ddof=1) / b.size


@pytest.mark.parametrize("seed", range(6))
def test_delong_variance_equals_the_brute_force_u_statistic(seed):
    rng = np.random.default_rng(seed)
    m, n = rng.integers(2, 60, 2)
    ties = seed % 2 == 0  # integer scores: many ties
    a = rng.integers(0, 6, m).astype(float) if ties else rng.normal(0.7, 1, m)
    b = rng.integers(0, 5, n).astype(float) if ties else rng.normal(0, 1, n)
    auroc, variance = _brute_delong(a, b)
    got = IDReference(a).metrics(b)
    assert got["AUROC"] == pytest.approx(100 * auroc)
    assert got[AUROC_SE] == pytest.approx(100 * math.sqrt(variance), rel=1e-9)
    v10, v01 = delong_components(a, b)
    psi = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    np.testing.assert_allclose(v10, psi.mean(1))
    np.testing.assert_allclose(v01, psi.mean(0))


def test_delong_intervals_cover_a_known_auroc_93_to_97_percent_of_the_time():
    """Binormal scores: ID ~ N(d, 1), OOD ~ N(0, 1) have AUROC Φ(d/√2) = 0.80."""
    rng = np.random.default_rng(0)
    d = math.sqrt(2) * norm.ppf(0.80)
    hits = 0
    for _ in range(2000):
        a, b = rng.normal(d, 1, 120), rng.normal(0, 1, 100)
        m = IDReference(a).metrics(b)
        low, high = auroc_interval(m["AUROC"], m[AUROC_SE])
        hits += low <= 80.0 <= high
    assert 0.93 <= hits / 2000 <= 0.97, hits / 2000


def test_the_paired_test_keeps_its_size_on_methods_of_equal_auroc():
    """Two scores of the same samples, equally noisy views of one latent score: equal AUROC in expectation."""
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(2000):
        latent_id, latent_ood = rng.normal(1, 1, 150), rng.normal(0, 1, 130)
        a = (
            latent_id + rng.normal(0, 0.7, 150),
            {"x": latent_ood + rng.normal(0, 0.7, 130)},
        )
        b = (
            latent_id + rng.normal(0, 0.7, 150),
            {"x": latent_ood + rng.normal(0, 0.7, 130)},
        )
        rejected += paired_auroc(a, b).p < 0.05
    assert rejected / 2000 <= 0.06, rejected / 2000


def test_the_paired_test_finds_a_real_difference_and_its_interval_holds_it():
    rng = np.random.default_rng(2)
    latent_id, latent_ood = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    good = (latent_id, {"x": latent_ood})
    noisy = (
        latent_id + rng.normal(0, 1, 2000),
        {"x": latent_ood + rng.normal(0, 1, 2000)},
    )
    difference = paired_auroc(good, noisy)
    true_gap = 100 * (norm.cdf(1 / math.sqrt(2)) - norm.cdf(1 / 2))
    assert difference.significant and difference.low < true_gap < difference.high


def test_the_mean_over_sets_shares_the_id_samples():
    """The mean AUROC's variance counts the ID components once (averaged over sets), by brute force."""
    rng = np.random.default_rng(3)
    a = rng.normal(1, 1, 40)
    sets = {"x": rng.normal(0, 1, 30), "y": rng.normal(0.5, 1, 25)}
    mean, low, high = auroc_mean_interval((a, sets))
    psis = [
        (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
        for b in sets.values()
    ]
    v10 = np.mean([p.mean(1) for p in psis], axis=0)
    variance = v10.var(ddof=1) / a.size + sum(
        (p.mean(0) / 2).var(ddof=1) / p.shape[1] for p in psis
    )
    assert mean == pytest.approx(100 * np.mean([p.mean() for p in psis]))
    assert high - low == pytest.approx(
        2 * 1.959963984540054 * 100 * math.sqrt(variance)
    )


def _copies(x: np.ndarray, weights: np.ndarray, step: float) -> np.ndarray:
    """A resample's scores: the copies of a drawn sample that no other drawn sample ties with become distinct
    values (copy k shifted by (k − 1)·step, an infinitesimal jitter); a tie between drawn samples stays a tie."""
    drawn = x[weights > 0]
    values, counts = np.unique(drawn, return_counts=True)
    alone = np.isin(x, values[counts == 1])
    return np.concatenate(
        [
            v + (step * np.arange(c) if lone else np.zeros(c))
            for v, c, lone in zip(x, weights, alone, strict=True)
        ]
    )


@pytest.mark.parametrize("seed", range(8))
def test_the_weighted_kernel_equals_metrics_of_the_resampled_scores(seed):
    """AUROC and FPR95 of the resample with its copies tied; the AUPRs with the copies of each untied positive
    ranked one after another (jittered away from the negatives), checked with sklearn; ties between samples stay
    ties (odd seeds: integer scores)."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(5, 80, 2)
    a = np.sort(
        rng.integers(0, 8, m).astype(float) if seed % 2 else rng.normal(0.5, 1, m)
    )
    b = np.sort(
        rng.integers(0, 8, n).astype(float) if seed % 2 else rng.normal(0, 1, n)
    )
    wa, wb = rng.multinomial(m, np.ones(m) / m), rng.multinomial(n, np.ones(n) / n)
    got = 100 * np.array(metric_kernels.weighted_metrics(a, wa, b, wb, 0.95))
    expected = IDReference(np.repeat(a, wa)).metrics(np.repeat(b, wb))
    np.testing.assert_allclose(
        got[:3],
        [expected[k] for k in ("AUROC", "FPR95", FPR95_OOD)],
        rtol=1e-9,
        atol=1e-9,
    )
    step = 1e-9
    id_jittered, ood = _copies(a, wa, -step), np.repeat(b, wb)
    aupr_in = average_precision_score(
        np.r_[np.ones(len(id_jittered)), np.zeros(len(ood))], np.r_[id_jittered, ood]
    )
    id_tied, ood_jittered = np.repeat(a, wa), _copies(b, wb, step)
    aupr_out = average_precision_score(
        np.r_[np.zeros(len(id_tied)), np.ones(len(ood_jittered))],
        -np.r_[id_tied, ood_jittered],
    )
    np.testing.assert_allclose(got[3:], [100 * aupr_in, 100 * aupr_out], rtol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_samples_that_were_not_drawn_change_nothing(seed):
    """Weight 0 is absence: the kernel on a resample equals the kernel on the drawn samples alone, also where an
    undrawn sample ties with a drawn one (integer scores)."""
    rng = np.random.default_rng(seed)
    m, n = rng.integers(5, 60, 2)
    a = np.sort(rng.integers(0, 6, m).astype(float))
    b = np.sort(rng.integers(0, 6, n).astype(float))
    wa, wb = rng.multinomial(m, np.ones(m) / m), rng.multinomial(n, np.ones(n) / n)
    full = metric_kernels.weighted_metrics(a, wa, b, wb, 0.95)
    drawn = metric_kernels.weighted_metrics(
        a[wa > 0], wa[wa > 0], b[wb > 0], wb[wb > 0], 0.95
    )
    np.testing.assert_allclose(full, drawn, rtol=1e-12)


def test_a_perfectly_reversed_set_has_an_aupr_interval_around_its_point():
    """Every resample of a reversed set (each OOD score above each ID score) is reversed too: with the copies
    ranked apart its AUPR is the point's; grouping them put the whole interval above the point (demo textures,
    MSP: [28.77, 28.78] around 28.73)."""
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.uniform(0, 1, 400), rng.uniform(2, 3, 600)
    point = IDReference(id_scores).metrics(ood_scores)
    intervals = bootstrap_intervals(id_scores, ood_scores, 200)
    for metric in ("AUPR-In", "AUPR-Out"):
        low, high = intervals[metric]
        assert low <= point[metric] <= high, (metric, low, point[metric], high)


def test_the_bootstrap_is_seeded_paired_and_cached():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    first = bootstrap_metrics(a, b, 200, seed=7)
    assert first is bootstrap_metrics(a, b, 200, seed=7)  # memoised per score vector
    again = bootstrap_metrics(a.copy(), b.copy(), 200, seed=7)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, bootstrap_metrics(a, b, 200, seed=8))
    # paired: a monotone transform of the scores keeps every resample's metrics
    same = paired_bootstrap(
        (a, {"x": b}), (np.exp(a), {"x": np.exp(b)}), "FPR95", resamples=200
    )
    assert same.delta == 0 and same.low == 0 == same.high
    low, high = bootstrap_intervals(a, b, 200)["FPR95"]
    point = IDReference(a).metrics(b)["FPR95"]
    assert low <= point <= high


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_the_per_set_paired_tests_in_one_pass_equal_each_paired_test():
    """The cards' one-pass tests (each set and the mean) equal ``paired_auroc`` asked set by set, which the
    brute-force tests above check; with ties, sets of different sizes and correlated methods."""
    rng = np.random.default_rng(4)
    latent_id = rng.normal(1, 1, 300).round(1)
    sets = {"x": rng.normal(0, 1, 200).round(1), "y": rng.normal(0.5, 1, 120).round(1)}
    a = (latent_id, sets)
    b = (
        latent_id + rng.normal(0, 0.5, 300),
        {k: v + rng.normal(0, 0.5, v.size) for k, v in sets.items()},
    )
    together = paired_auroc_per_set(a, b)
    assert set(together) == {"x", "y", "mean"}
    for name in sets:
        assert astuple(together[name]) == pytest.approx(
            astuple(paired_auroc(a, b, [name])), rel=1e-9
        )
    assert astuple(together["mean"]) == pytest.approx(
        astuple(paired_auroc(a, b)), rel=1e-9
    )
    # the mean's test by brute force: ID components averaged over the sets, OOD components over the number of sets
    psi = {
        side: [
            (x[0][:, None] > x[1][n][None, :])
            + 0.5 * (x[0][:, None] == x[1][n][None, :])
            for n in sets
        ]
        for side, x in (("a", a), ("b", b))
    }
    d10 = np.mean(
        [pa.mean(1) - pb.mean(1) for pa, pb in zip(psi["a"], psi["b"])], axis=0
    )
    variance = d10.var(ddof=1) / d10.size + sum(
        ((pa.mean(0) - pb.mean(0)) / len(sets)).var(ddof=1) / pa.shape[1]
        for pa, pb in zip(psi["a"], psi["b"])
    )
    mean = together["mean"]
    assert mean.delta == pytest.approx(100 * d10.mean(), rel=1e-9)
    assert mean.high - mean.low == pytest.approx(
        2 * 1.959963984540054 * 100 * math.sqrt(variance), rel=1e-9
    )
    assert set(paired_auroc_per_set((latent_id, {"x": sets["x"]}), a)) == {"x"}
