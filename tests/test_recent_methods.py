"""The 2021–2025 detectors (issue 17) against pytorch-ood's detectors on the same arrays, per-sample loops written
from the papers' formulas, and hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood.detector import (
    NCI as PoodNCI,
)
from pytorch_ood.detector import (
    RMD,
    SCALE,
    Entropy,
    KLMatching,
    Mahalanobis,
    ViM,
    fDBD,
)
from synthetic import synthetic_features

from ood_core.errors import OODLabError, UnknownNameError
from ood_core.scores import get_method
from ood_core.scores.optfs import Shaping
from ood_core.scores.subspace import dimension


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(7)
    train = synthetic_features(rng, 300, blocks=("b1", "b2", "b3"), norms=True)
    weight = np.asarray(train["head/weight"])
    test = synthetic_features(
        rng, 60, weight=weight, blocks=("b1", "b2", "b3"), norms=True
    )
    far = synthetic_features(
        rng, 40, shift=-0.6, weight=weight, blocks=("b1", "b2", "b3")
    )
    return train, test, far


def score(name: str, train, features, **params) -> np.ndarray:
    method = get_method(name)
    return method.score(features, method.fit_state(train, **params), **params)


def tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, np.float64))


def head(features) -> torch.nn.Linear:
    weight = np.asarray(features["head/weight"], np.float32)
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(np.asarray(features["head/bias"])))
    return linear


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --- output space ---------------------------------------------------------------------------------------------------


def test_entropy_by_hand_and_against_pytorch_ood(sets):
    uniform = {"logits": np.zeros((1, 4), np.float32)}
    assert get_method("entropy").score(uniform, blocks=[])[0] == pytest.approx(
        -np.log(4)
    )
    _, test, _ = sets
    theirs = Entropy.score(tensor(test["logits"])).numpy()
    np.testing.assert_allclose(get_method("entropy").score(test), -theirs, rtol=1e-10)


def test_kl_matching_equals_a_loop_and_pytorch_ood(sets):
    train, _, far = sets
    ours = score("kl-matching", train, far)
    p_train, p = softmax(train["logits"]), softmax(far["logits"])
    predicted = p_train.argmax(1)
    templates = [p_train[predicted == c].mean(0) for c in np.unique(predicted)]
    loop = [-min((q * np.log(q / d)).sum() for d in templates) for q in p]
    np.testing.assert_allclose(ours, loop, rtol=1e-9)
    oracle = KLMatching(None).fit_logits(tensor(train["logits"]))
    theirs = oracle.predict_logits(tensor(far["logits"])).numpy()
    np.testing.assert_allclose(ours, -theirs, rtol=1e-9, atol=1e-12)


def test_kl_matching_of_a_template_itself_is_zero():
    train = {"logits": np.log(np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]))}
    state = get_method("kl-matching").fit_state(train)
    assert get_method("kl-matching").score(train, state, blocks=[]) == pytest.approx(
        [0.0, 0.0], abs=1e-12
    )


# --- Gaussian feature models ----------------------------------------------------------------------------------------


def test_mahalanobis_plus_plus_is_mahalanobis_on_unit_features(sets):
    train, test, _ = sets
    ours = score("mahalanobis++", train, test)
    z_train = train.penultimate / np.linalg.norm(
        train.penultimate, axis=1, keepdims=True
    )
    z = test.penultimate / np.linalg.norm(test.penultimate, axis=1, keepdims=True)
    y = np.asarray(train.labels)
    means = np.array([z_train[y == c].mean(0) for c in range(4)])
    centred = z_train - means[y]
    precision = np.linalg.inv(centred.T @ centred / len(z_train))
    loop = [-min((x - m) @ precision @ (x - m) for m in means) for x in z]
    np.testing.assert_allclose(ours, loop, rtol=1e-5)
    # pytorch-ood sums the centred outer products (no 1/N) and scores −½ min: ours = −2N × theirs
    oracle = Mahalanobis(None).fit_features(
        torch.from_numpy(z_train), torch.from_numpy(y)
    )
    theirs = oracle.predict_features(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(ours, -2 * len(z_train) * theirs, rtol=1e-3)


def test_rmds_equals_a_loop_and_pytorch_ood(sets):
    train, test, far = sets
    h_train, y = np.asarray(train.penultimate, np.float64), np.asarray(train.labels)
    means = np.array([h_train[y == c].mean(0) for c in range(4)])
    centred = h_train - means[y]
    precision = np.linalg.inv(centred.T @ centred / len(h_train))
    mu0 = h_train.mean(0)
    precision0 = np.linalg.inv((h_train - mu0).T @ (h_train - mu0) / len(h_train))
    for features in (test, far):
        ours = score("rmds", train, features)
        loop = [
            -min(
                (x - m) @ precision @ (x - m) - (x - mu0) @ precision0 @ (x - mu0)
                for m in means
            )
            for x in np.asarray(features.penultimate, np.float64)
        ]
        np.testing.assert_allclose(ours, loop, rtol=1e-6)
        # pytorch-ood's covariances are sums (no 1/N), which scales both distances by 1/N
        oracle = RMD(None).fit_features(
            torch.from_numpy(train.penultimate), torch.from_numpy(y)
        )
        theirs = oracle.predict_features(torch.from_numpy(features.penultimate)).numpy()
        np.testing.assert_allclose(ours, -len(h_train) * theirs, rtol=1e-3)


# --- head geometry --------------------------------------------------------------------------------------------------


def test_fdbd_by_hand():
    # two classes, w = ±e1, no bias: z = (h1, −h1), boundary distance |2 h1| / 2 = |h1|; μ = (0, 1)
    train = {"penultimate": np.array([[1.0, 1.0], [-1.0, 1.0]])}
    weight = np.array([[1.0, 0.0], [-1.0, 0.0]])
    h = np.array([[3.0, 5.0]])
    features = {"penultimate": h, "logits": h @ weight.T, "head/weight": weight}
    method = get_method("fdbd")
    assert method.score(features, method.fit_state(train), blocks=[])[
        0
    ] == pytest.approx(3 / 5)


def test_fdbd_equals_a_loop_and_pytorch_ood(sets):
    train, test, _ = sets
    ours = score("fdbd", train, test)
    w, b = (
        np.asarray(test["head/weight"], np.float64),
        np.asarray(test["head/bias"], np.float64),
    )
    mu = np.asarray(train.penultimate, np.float64).mean(0)
    loop = []
    for x in np.asarray(test.penultimate, np.float64):
        z = w @ x + b
        f = z.argmax()
        d = [abs(z[f] - z[c]) / np.linalg.norm(w[f] - w[c]) for c in range(4) if c != f]
        loop.append(np.mean(d) / np.linalg.norm(x - mu))
    np.testing.assert_allclose(ours, loop, rtol=1e-5)
    oracle = fDBD(None, head(test)).fit_features(torch.from_numpy(train.penultimate))
    theirs = oracle.predict_features(torch.from_numpy(test.penultimate)).numpy()
    np.testing.assert_allclose(ours, -theirs, rtol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.05])
def test_nci_equals_a_loop_and_pytorch_ood(sets, alpha):
    train, _, far = sets
    ours = score("nci", train, far, alpha=alpha)
    w = np.asarray(far["head/weight"], np.float64)
    mu = np.asarray(train.penultimate, np.float64).mean(0)
    loop = []
    for x, z in zip(np.asarray(far.penultimate, np.float64), far["logits"]):
        c = np.argmax(z)
        loop.append((x - mu) @ w[c] / np.linalg.norm(x - mu) + alpha * np.abs(x).sum())
    np.testing.assert_allclose(ours, loop, rtol=1e-6, atol=1e-7)  # float32 distances
    oracle = PoodNCI(None, head(far), alpha=alpha).fit_features(
        torch.from_numpy(train.penultimate)
    )
    theirs = oracle.predict_features(torch.from_numpy(far.penultimate)).numpy()
    np.testing.assert_allclose(ours, -theirs, rtol=1e-4, atol=1e-5)


# --- ViM ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [12.5, 25.0, 50.0, 75.0])
def test_vim_equals_numpy_svd_and_pytorch_ood(sets, share):
    train, test, far = sets
    d = dimension(16, share)
    w, b = (
        np.asarray(train["head/weight"], np.float64),
        np.asarray(train["head/bias"], np.float64),
    )
    origin = -np.linalg.pinv(w) @ b
    centred = np.asarray(train.penultimate, np.float64) - origin
    _, _, vt = np.linalg.svd(
        centred, full_matrices=True
    )  # right singular vectors: covariance eigenvectors
    null = vt[d:].T
    train_residual = np.linalg.norm(centred @ null, axis=1)
    alpha = (
        np.asarray(train["logits"], np.float64).max(1).mean() / train_residual.mean()
    )
    oracle = ViM(None, d, torch.from_numpy(w).float(), torch.from_numpy(b).float())
    oracle.fit_features(
        torch.from_numpy(train.penultimate), torch.from_numpy(train.labels)
    )
    for features in (test, far):
        ours = score("vim", train, features, share=share)
        x = np.asarray(features.penultimate, np.float64) - origin
        energy = np.log(np.exp(np.asarray(features["logits"], np.float64)).sum(1))
        loop = [e - alpha * np.linalg.norm(row @ null) for e, row in zip(energy, x)]
        np.testing.assert_allclose(ours, loop, rtol=1e-5, atol=1e-6)
        theirs = oracle.predict_features(torch.from_numpy(features.penultimate)).numpy()
        np.testing.assert_allclose(ours, -theirs, rtol=1e-3, atol=1e-3)


# --- shaping --------------------------------------------------------------------------------------------------------


def test_scale_by_hand():
    # h = (3, 1, 0, 0), p = 50 keeps the top 2: s1 = s2 = 4, r = e; W = I (2 classes read h1, h2), b = 0
    h = np.array([[3.0, 1.0, 0.0, 0.0]], np.float32)
    weight = np.eye(2, 4, dtype=np.float32)
    features = {
        "penultimate": h,
        "head/weight": weight,
        "head/bias": np.zeros(2, np.float32),
    }
    method = get_method("scale")
    expected = np.log(np.exp(3 * np.e) + np.exp(np.e))
    assert method.score(features, blocks=[], p=50)[0] == pytest.approx(
        expected, rel=1e-9
    )


@pytest.mark.parametrize("p", [0.0, 50.0, 85.0, 93.0])  # 93: keeps 1 of 16
def test_scale_equals_pytorch_ood(sets, p):
    _, test, far = sets
    oracle = SCALE(
        torch.nn.Identity(),
        torch.nn.Sequential(torch.nn.Flatten(), head(test)),
        p / 100,
    )
    for features in (test, far):
        h = np.asarray(features.penultimate)
        h = h[h.sum(1) > 0]  # pytorch-ood divides by a zero sum
        rows = {k: features[k] for k in ("head/weight", "head/bias")} | {
            "penultimate": h
        }
        theirs = oracle.predict_feature_maps(
            torch.from_numpy(h)[:, :, None, None]
        ).numpy()
        ours = get_method("scale").score(rows, blocks=[], p=p)
        np.testing.assert_allclose(
            ours, -theirs, rtol=1e-4
        )  # pytorch-ood works in float32


def _optfs_reference(train, features) -> np.ndarray:
    """The authors' code (OptFSOOD detector/ours.py), loop over intervals, 'vanilla' score, with exactly 100
    half-open intervals [b, b + width)."""
    h_train = np.asarray(train["penultimate"], np.float64)
    w = np.asarray(train["head/weight"], np.float64)
    low, high = np.quantile(h_train, 1e-3), np.quantile(h_train, 1 - 1e-3)
    width = (high - low) / 100
    edges = low + width * np.arange(100)
    contribution = w[np.argmax(train["logits"], 1)] * h_train
    theta = np.array(
        [
            np.mean(np.sum(((h_train >= e) & (h_train < e + width)) * contribution, 1))
            for e in edges
        ]
    )
    theta = theta / np.linalg.norm(theta) * 1000
    h = np.asarray(features["penultimate"], np.float64)
    shaped = np.zeros_like(h)
    for e, t in zip(edges, theta):
        shaped += ((h >= e) & (h < e + width)) * h * t
    return (w[np.argmax(features["logits"], 1)] * shaped).sum(1)


def test_optfs_equals_the_reference_loop(sets):
    train, test, far = sets
    for features in (test, far, train):
        np.testing.assert_allclose(
            score("optfs", train, features),
            _optfs_reference(train, features),
            rtol=1e-5,
        )


def test_optfs_by_hand():
    # intervals [0, 1), [1, 2), [2, 3) with θ = 1, 2, 3; one class reading every feature with weight 1
    state = Shaping(
        low=np.array([0.0]), width=np.array([1.0]), theta=np.array([1.0, 2.0, 3.0])
    )
    features = {
        "penultimate": np.array([[0.5, 1.5, 2.5, 7.0]]),
        "logits": np.array([[1.0]]),
        "head/weight": np.ones((1, 4)),
    }
    # 0.5·1 + 1.5·2 + 2.5·3, and 7 lies beyond the range: shaped to 0
    assert get_method("optfs").score(features, state, blocks=[])[0] == pytest.approx(
        11.0
    )


def test_optfs_theta_follows_the_mean_contribution_of_each_interval():
    # one class reading both features with weight 1, values spread evenly over [0, 1]: θ_b ∝ the centre of b
    h = np.linspace(0, 1, 20001)[:, None].repeat(2, axis=1)
    train = {
        "penultimate": h,
        "logits": h.sum(1, keepdims=True),
        "head/weight": np.ones((1, 2)),
    }
    theta = get_method("optfs").fit_state(train).theta
    assert np.linalg.norm(theta) == pytest.approx(1000)
    assert np.corrcoef(theta, np.arange(100))[0, 1] > 0.999


# --- multi-block ----------------------------------------------------------------------------------------------------


def _nap_loop(features, block, eps):
    mx, mean = features[f"blocks/{block}/max"], features[f"blocks/{block}/mean"]
    return np.array([np.mean((a / (m + eps)) ** 2) for a, m in zip(mx, mean)])


@pytest.mark.parametrize(("blocks", "eps"), [("all", 1.0), ("b3+b1", 0.5), ("b2", 1.0)])
def test_nap_multi_is_the_mean_of_train_standardised_block_scores(sets, blocks, eps):
    train, test, _ = sets
    chosen = ["b1", "b2", "b3"] if blocks == "all" else sorted(blocks.split("+"))
    expected = np.mean(
        [
            (_nap_loop(test, b, eps) - _nap_loop(train, b, eps).mean())
            / _nap_loop(train, b, eps).std()
            for b in chosen
        ],
        axis=0,
    )
    np.testing.assert_allclose(
        score("nap-multi", train, test, block_set=blocks, eps=eps),
        expected,
        rtol=1e-4,
        atol=1e-6,
    )


def test_one_block_ranks_exactly_like_that_block(sets):
    train, test, _ = sets
    multi = score("featurenorm-multi", train, test, block_set="b2")
    single = get_method("featurenorm").score(test, block="b2")
    np.testing.assert_array_equal(
        np.argsort(multi, kind="stable"), np.argsort(single, kind="stable")
    )


def test_block_sets_are_checked(sets):
    _, test, _ = sets
    method = get_method("nap-multi")
    assert method.resolve(test.blocks, {"block_set": "b3+b1"})["block_set"] == "b1+b3"
    assert method.resolve(test.blocks, {"block_set": "last"})["block_set"] == "b3"
    assert method.resolve(test.blocks, {})["block_set"] == "b1+b2+b3"
    with pytest.raises(UnknownNameError, match="b9"):
        method.resolve(test.blocks, {"block_set": "b1+b9"})
    with pytest.raises(OODLabError, match="at least one block"):
        method.resolve(test.blocks, {"block_set": "+"})


def test_gen_terms_of_confident_predictions_match_an_mpmath_reference():
    """log(p_top (1 − p_top)) for margins up to 60: log1p(−p) would cancel below 1 − p ≈ 1e-15."""
    import mpmath

    from ood_core.scores.output import gen_terms

    mpmath.mp.dps = 60
    logits = np.array([[m, 0.0, -1.0, 0.5] for m in (0.0, 5.0, 20.0, 35.0, 42.0, 60.0)])
    terms = gen_terms(logits)
    for row, z in zip(terms, logits):
        exact = [mpmath.mpf(v) for v in z]
        total = mpmath.fsum(mpmath.e**v for v in exact)
        p = sorted((mpmath.e**v / total for v in exact), reverse=True)
        expected = [float(mpmath.log(q * (1 - q))) for q in p]
        np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-12)


def test_vim_origin_ignores_rounding_level_singular_values_of_a_float32_head():
    """A rank-2 head of 3 classes in float32 (its third singular value is rounding noise): the origin −W⁺b is the
    float64 minimum-norm solution on the two real directions, not a division by ~1e-8."""
    from ood_core.scores.subspace import pinv_cutoff

    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    exact = u[:, :2] @ np.diag([5.0, 2.0]) @ v[:, :2].T
    weight = exact.astype(np.float32).astype(np.float64)
    bias = rng.normal(size=3)
    reference = -np.linalg.pinv(exact, rcond=1e-10) @ bias
    origin = -np.linalg.pinv(weight, rcond=pinv_cutoff(weight)) @ bias
    np.testing.assert_allclose(origin, reference, rtol=1e-5, atol=1e-5)
    naive = -np.linalg.pinv(weight) @ bias  # NumPy's default cutoff (the official code)
    assert np.linalg.norm(naive) > 1e3 * np.linalg.norm(reference)
