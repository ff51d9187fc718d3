"""Every method of the library against an independent computation (per-sample loops, numpy/sklearn/scipy)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from synthetic import synthetic_features

from ood_core.metrics import ood_metrics
from ood_core.scores import METHODS, get_method
from ood_core.scores.nap import NAP_X, nap_combined


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    train = synthetic_features(rng, 300)
    weight = np.asarray(train["head/weight"])
    return (
        train,
        synthetic_features(rng, 40, weight=weight),
        synthetic_features(rng, 30, shift=-0.6, weight=weight),
    )


class Fitted:
    """Each method's state fitted on the synthetic ID train set (what the workspace would pass)."""

    def __init__(self, train):
        self.train = train

    def __call__(self, method):
        return method.fit_state(self.train)


@pytest.fixture(scope="module")
def stats(sets):
    return Fitted(sets[0])


def test_fitted_states_match_numpy(sets, stats):
    train = sets[0]
    h, y = np.asarray(train.penultimate, np.float64), np.asarray(train.labels)
    means = stats(get_method("mahalanobis")).means
    for c in range(4):
        np.testing.assert_allclose(means[c], h[y == c].mean(0), rtol=1e-10)
    quantiles = stats(get_method("react"))
    for p in (50, 90, 97.5):
        assert quantiles.threshold(p) == pytest.approx(
            np.percentile(h.ravel(), p), rel=1e-9
        )


def test_mahalanobis_equals_per_sample_loop(sets, stats):
    train, test, _ = sets
    h, y = np.asarray(train.penultimate, np.float64), np.asarray(train.labels)
    means = np.array([h[y == c].mean(0) for c in range(4)])
    centred = h - means[y]
    inverse = np.linalg.inv(centred.T @ centred / len(h))
    expected = [
        -min((x - m) @ inverse @ (x - m) for m in means)
        for x in np.asarray(test.penultimate, np.float64)
    ]
    np.testing.assert_allclose(
        get_method("mahalanobis").score(test, stats(get_method("mahalanobis"))),
        expected,
        rtol=1e-6,
    )


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_equals_sorted_cosine_distances(sets, stats, k):
    train, test, _ = sets
    bank = np.asarray(train.penultimate, np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    expected = []
    for x in np.asarray(test.penultimate, np.float64):
        z = x / np.linalg.norm(x)
        expected.append(-sorted(np.linalg.norm(bank - z, axis=1))[k - 1])
    np.testing.assert_allclose(
        get_method("knn").score(test, stats(get_method("knn")), k=k),
        expected,
        rtol=1e-5,
    )


@pytest.mark.parametrize("p", [50, 90])
def test_react_equals_clip_then_energy_loop(sets, stats, p):
    train, test, _ = sets
    c = np.percentile(np.asarray(train.penultimate).ravel(), p)
    w, b = (
        np.asarray(train["head/weight"], np.float64),
        np.asarray(train["head/bias"], np.float64),
    )
    expected = [
        logsumexp(w @ np.minimum(x, c) + b)
        for x in np.asarray(test.penultimate, np.float64)
    ]
    np.testing.assert_allclose(
        get_method("react").score(test, stats(get_method("react")), p=p),
        expected,
        rtol=1e-6,
    )


@pytest.mark.parametrize("p", [0, 70, 90])
def test_dice_equals_masked_weight_loop(sets, stats, p):
    train, test, _ = sets
    w, b = (
        np.asarray(train["head/weight"], np.float64),
        np.asarray(train["head/bias"], np.float64),
    )
    mean_h = np.asarray(train.penultimate, np.float64).mean(0)
    contributions = [
        mean_h[j] * w[k, j] for k in range(w.shape[0]) for j in range(w.shape[1])
    ]
    threshold = np.percentile(contributions, p)
    masked = np.array(
        [
            [
                w[k, j] if mean_h[j] * w[k, j] > threshold else 0.0
                for j in range(w.shape[1])
            ]
            for k in range(w.shape[0])
        ]
    )
    expected = [
        logsumexp(masked @ x + b) for x in np.asarray(test.penultimate, np.float64)
    ]
    np.testing.assert_allclose(
        get_method("dice").score(test, stats(get_method("dice")), p=p),
        expected,
        rtol=1e-6,
    )


def _ash_loop(x, p, variant):
    d = len(x)
    k = max(1, d - round(d * p / 100))  # ASH keeps at least one activation
    keep = np.argsort(-x, kind="stable")[:k]
    out = np.zeros(d)
    s1, s2 = x.sum(), x[keep].sum()
    out[keep] = {
        "p": x[keep],
        "b": np.full(k, s1 / k),
        "s": x[keep] * math.exp(s1 / s2),
    }[variant]
    return out


@pytest.mark.parametrize("variant", ["p", "b", "s"])
@pytest.mark.parametrize("p", [0, 60, 90, 99])
@pytest.mark.parametrize("ties", [False, True])
def test_ash_equals_per_sample_sort(variant, p, ties):
    """Against a stable per-sample sort, including ties (integer activations, many zeros) and the range ends."""
    rng = np.random.default_rng(1)
    x = (
        rng.integers(0, 3, (25, 40)).astype(np.float32)
        if ties
        else rng.uniform(0, 2, (25, 40)).astype(np.float32)
    )
    w, b = rng.normal(0, 0.5, (4, 40)), np.linspace(-0.1, 0.1, 4)
    features = {
        "penultimate": x,
        "head/weight": w.astype(np.float32),
        "head/bias": b.astype(np.float32),
    }
    w32, b32 = (
        features["head/weight"].astype(np.float64),
        features["head/bias"].astype(np.float64),
    )
    expected = [
        logsumexp(w32 @ _ash_loop(row.astype(np.float64), p, variant) + b32)
        for row in x
    ]
    scores = get_method(f"ash-{variant}").score(features, blocks=[], p=p)
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)


def test_ash_methods_read_out_with_energy(sets):
    _, test, _ = sets
    w, b = (
        np.asarray(test["head/weight"], np.float64),
        np.asarray(test["head/bias"], np.float64),
    )
    shaped = [_ash_loop(x, 90, "s") for x in np.asarray(test.penultimate, np.float64)]
    np.testing.assert_allclose(
        get_method("ash-s").score(test, p=90),
        [logsumexp(w @ x + b) for x in shaped],
        rtol=1e-6,
    )


def test_nap_x_hand_worked_combination():
    # MSP is already positive: log S = λ log 0.8 + (1−λ) log 2.
    assert nap_combined(np.array([0.8]), np.array([2.0]), 0.25, True)[
        0
    ] == pytest.approx(math.log(0.8**0.25 * 2**0.75))
    # Energy may be ≤ 0: softplus(−1) = log(1 + e⁻¹).
    expected = math.log(math.log1p(math.exp(-1)) ** 0.5 * 3**0.5)
    assert nap_combined(np.array([-1.0]), np.array([3.0]), 0.5, False)[
        0
    ] == pytest.approx(expected)
    assert np.isfinite(
        nap_combined(np.array([-1e4, 1e4]), np.array([0.0, 1.0]), 0.5, False)
    ).all()


@pytest.mark.parametrize("name", [m.name for m in NAP_X])
def test_nap_x_endpoints_rank_like_base_and_like_nap(sets, stats, name):
    _, test, ood = sets
    method = METHODS[name]
    base = get_method(
        {
            "nap-energy": "energy",
            "nap-react": "react",
            "nap-ash": "ash-s",
            "nap-dice": "dice",
            "nap-msp": "msp",
            "nap-knn": "knn",
        }[name]
    )
    base_params = {k: v for k, v in method.defaults().items() if k in base.defaults()}
    nap_params = {"block": "b2", "eps": 1.0}

    def auroc(m, **p):
        return ood_metrics(m.score(test, stats(m), **p), m.score(ood, stats(m), **p))[
            "AUROC"
        ]

    assert auroc(method, **{"lambda": 1.0}, block="b2") == pytest.approx(
        auroc(base, **base_params), abs=1e-9
    )
    assert auroc(method, **{"lambda": 0.0}, **nap_params) == pytest.approx(
        auroc(get_method("nap"), **nap_params), abs=1e-9
    )


def test_methods_needing_train_statistics_say_so(sets):
    from ood_core.errors import OODLabError

    with pytest.raises(OODLabError, match="needs statistics of the ID train features"):
        get_method("knn").score(sets[1])


def test_odin_equals_a_per_sample_autograd_loop():
    from ood_core.engine.extract import ExtractionSettings
    from ood_core.engine.reinference import odin_scores
    from ood_core.inputs.datasets import ImageSet

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    x = torch.randn(5, 3, 8, 8)
    images = ImageSet(lambda i: x[i], np.zeros(5, np.int64), [str(i) for i in range(5)])
    std, temperature, eps = (0.5, 0.25, 0.2), 10.0, 0.01
    scores, rows = odin_scores(
        model,
        images,
        std,
        temperature,
        eps,
        ExtractionSettings(batch_size=2, device="cpu"),
    )
    expected = []
    for i in range(5):
        xi = x[i : i + 1].clone().requires_grad_(True)
        logits = model(xi)[0] / temperature
        (-torch.log_softmax(logits, 0)[logits.argmax()]).backward()
        perturbed = (
            xi - torch.tensor(std).view(1, 3, 1, 1).reciprocal() * eps * xi.grad.sign()
        )
        expected.append(
            torch.softmax(model(perturbed)[0] / temperature, 0).max().item()
        )
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    np.testing.assert_array_equal(rows, np.arange(5))


def test_every_registered_method_is_covered_here():
    covered = {
        "msp",
        "maxlogit",
        "energy",
        "nap",
        "odin",
        "mahalanobis",
        "knn",
        "react",
        "dice",
        "ash-p",
        "ash-b",
        "ash-s",
        *[m.name for m in NAP_X],
        "featurenorm",
        "nap-nr",
        "line",
        "heatmap",  # tests/test_heatmap.py
        "gen",  # tests/test_gen.py
        # tests/test_recent_methods.py
        "entropy",
        "kl-matching",
        "mahalanobis++",
        "rmds",
        "fdbd",
        "nci",
        "vim",
        "scale",
        "optfs",
        "nap-multi",
        "featurenorm-multi",
    }
    assert (
        set(METHODS) == covered
    )  # msp/maxlogit/energy/nap: test_scores.py; ash-p/b: test_ash_equals_per_sample_sort


@pytest.mark.parametrize("chunk_elements", [7, 64, 1 << 21])
def test_chunked_class_moments_equal_whole_array_numpy(monkeypatch, chunk_elements):
    from ood_core.scores import moments

    # 1 row, 8 rows with a remainder, one chunk
    monkeypatch.setattr(moments, "CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(4)
    h = rng.normal(size=(203, 8)).astype(np.float32)
    labels = rng.integers(0, 4, len(h))
    labels[labels == 2] = 3  # class 2 has no sample: its mean is zero
    means = moments.class_means(h, labels, 4)
    expected = np.stack(
        [
            h[labels == c].astype(np.float64).mean(0)
            if (labels == c).any()
            else np.zeros(8)
            for c in range(4)
        ]
    )
    np.testing.assert_allclose(means, expected, rtol=1e-12, atol=1e-15)
    centred = h.astype(np.float64) - means[labels]
    ours = moments.covariance(h, lambda a, b: means[labels[a:b]])
    np.testing.assert_allclose(
        ours, centred.T @ centred / len(h), rtol=1e-12, atol=1e-15
    )


def test_class_means_need_one_label_per_row():
    from ood_core.errors import OODLabError
    from ood_core.scores.moments import class_means

    h = np.ones((5, 2), np.float32)
    for labels in (np.zeros(4, int), np.zeros(6, int)):
        with pytest.raises(OODLabError, match="one label per ID train sample"):
            class_means(h, labels, 2)


@pytest.mark.parametrize("rows, dim", [(500, 20), (50, 64)])
def test_precision_equals_sklearns_pseudo_inverse_even_when_rank_deficient(rows, dim):
    from sklearn.covariance import EmpiricalCovariance, empirical_covariance

    from ood_core.scores.feature_space import pseudo_inverse
    from ood_core.scores.moments import covariance

    x = np.random.default_rng(3).normal(size=(rows, dim))
    x[:, 3] = x[:, 2]  # a repeated feature: the covariance is singular
    expected = EmpiricalCovariance().fit(x).precision_
    mean = x.mean(axis=0)
    ours_covariance = covariance(x, lambda a, b: mean)
    np.testing.assert_allclose(ours_covariance, empirical_covariance(x), atol=1e-12)
    # the rows were copied, not centred in place
    assert np.array_equal(x.mean(axis=0), mean)
    ours = pseudo_inverse(ours_covariance)
    np.testing.assert_allclose(ours, expected, atol=1e-10 * np.abs(expected).max())
