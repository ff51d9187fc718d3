"""Every fast path against the straightforward float64 computation it replaces, and against pytorch-ood on the same
arrays: random inputs with ties (integer activations, many zeros), both ends of every slider, and the fallback used
when checkpoints would not fit in memory."""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

from ood_core import jit
from ood_core.metrics import ood_metrics
from ood_core.scores import get_method, kernels, output, shaping
from ood_core.scores.line import LINE, fit_importance, line_score

RNG = np.random.default_rng(7)


def _features(
    n: int = 300, d: int = 48, k: int = 6, ties: bool = False, shift: float = 0.0
) -> dict:
    if ties:
        h = RNG.integers(0, 4, (n, d)).astype(np.float32)  # many equal values and zeros
    else:
        h = np.maximum(RNG.normal(0.6 + shift, 1.0, (n, d)), 0).astype(np.float32)
    weight = RNG.normal(0, 0.4, (k, d)).astype(np.float32)
    bias = RNG.normal(0, 0.1, k).astype(np.float32)
    return {
        "penultimate": h,
        "logits": (h @ weight.T + bias).astype(np.float32),
        "labels": RNG.integers(0, k, n),
        "head/weight": weight,
        "head/bias": bias,
        "blocks/b/max": (RNG.uniform(0, 3, (n, 20)) + 0.1).astype(np.float32),
        "blocks/b/mean": RNG.uniform(0, 1, (n, 20)).astype(np.float32),
        "blocks/b/l2": RNG.uniform(0, 5, (n, 20)).astype(np.float32),
    }


def _f64(f: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        f["penultimate"].astype(np.float64),
        f["head/weight"].astype(np.float64),
        f["head/bias"].astype(np.float64),
    )


def _same(fast: np.ndarray, reference: np.ndarray, tolerance: float = 1e-11) -> None:
    np.testing.assert_allclose(fast, reference, rtol=tolerance, atol=tolerance)
    # Rank equality wherever the reference itself separates the scores by more than the tolerance allows.
    order = np.argsort(reference, kind="stable")
    gaps = np.diff(reference[order]) > 100 * tolerance * max(
        1.0, np.abs(reference).max()
    )
    assert (np.diff(fast[order])[gaps] > 0).all()


def _same_float32(fast: np.ndarray, reference: np.ndarray) -> None:
    """The large-head path (one float32 matrix product per move): equal to float32 precision, ranks included."""
    _same(fast, reference, tolerance=1e-5)


@pytest.fixture(params=[False, True], ids=["continuous", "ties"])
def features(request):
    return _features(ties=request.param)


@pytest.fixture(params=["checkpoints", "coarse checkpoints", "one product per move"])
def checkpoint_mode(request, monkeypatch):
    if request.param == "coarse checkpoints":
        # Strides of 16 weights (D = 48): walks of up to 8 entries, forward from the checkpoint below or backward
        # from the one above.
        monkeypatch.setattr(shaping, "CHECKPOINTS", 3)
        monkeypatch.setattr(shaping, "DICE_CHECKPOINTS", 3)
    if request.param == "one product per move":
        monkeypatch.setattr(shaping, "CHECKPOINT_BUDGET", 0)
    return request.param


@pytest.mark.parametrize("p", [50.0, 63.7, 90.0, 99.9])
def test_react_equals_clip_then_energy(features, checkpoint_mode, p):
    train = _features()
    state = get_method("react").fit_state(train)
    h, w, b = _f64(features)
    reference = logsumexp(np.minimum(h, state.threshold(p)) @ w.T + b, axis=1)
    fast = get_method("react").score(features, state, blocks=[], p=p)
    (_same if "checkpoints" in checkpoint_mode else _same_float32)(fast, reference)


@pytest.mark.parametrize("p", [0.0, 1.0, 50.0, 90.0, 99.0])
def test_dice_equals_masked_head(features, checkpoint_mode, p):
    train = _features(ties=True)  # integer means: ties among the contributions
    train["head/weight"], train["head/bias"] = (
        features["head/weight"],
        features["head/bias"],
    )  # one model
    method = get_method("dice")
    state = method.fit_state(train)
    h, w, b = _f64(features)
    contribution = train["penultimate"].astype(np.float64).mean(0)[None, :] * train[
        "head/weight"
    ].astype(np.float64)
    mask = contribution > np.percentile(contribution, p)
    fast = method.score(features, state, blocks=[], p=p)
    reference = logsumexp(h @ (w * mask).T + b, axis=1)
    (_same if "checkpoints" in checkpoint_mode else _same_float32)(fast, reference)


@pytest.mark.parametrize("variant", ["p", "b", "s"])
@pytest.mark.parametrize("p", [0.0, 37.0, 90.0, 99.0])
def test_ash_without_checkpoints_equals_with(features, variant, p, monkeypatch):
    method = get_method(f"ash-{variant}")
    with_checkpoints = method.score(features, blocks=[], p=p)
    # Walks of up to 8 entries, both ways:
    monkeypatch.setattr(shaping, "CHECKPOINTS", 3)
    _same(method.score(features, blocks=[], p=p), with_checkpoints)
    monkeypatch.setattr(shaping, "CHECKPOINT_BUDGET", 0)
    _same_float32(method.score(features, blocks=[], p=p), with_checkpoints)


@pytest.mark.parametrize("p", [0.0, 50.0, 85.0, 99.0])
def test_scale_without_checkpoints_equals_with(features, p, monkeypatch):
    method = get_method("scale")
    with_checkpoints = method.score(features, blocks=[], p=p)
    monkeypatch.setattr(shaping, "CHECKPOINT_BUDGET", 0)
    _same(method.score(features, blocks=[], p=p), with_checkpoints)


@pytest.mark.parametrize("clip", [0.0, 0.7, 2.5, 100.0])
def test_clipped_argmax_without_checkpoints_equals_the_clipped_head(
    features, clip, monkeypatch
):
    """LINe's predicted class after ReAct clipping, read from one product per move."""
    monkeypatch.setattr(shaping, "CHECKPOINT_BUDGET", 0)
    prepared = {**features, **shaping.prepare_sorted_rows(features)}
    predicted = shaping.prefix_scores(prepared, kernels.CLIPPED_ARGMAX, clip=clip)
    h, w, b = _f64(features)
    logits = np.minimum(h, clip) @ w.T + b
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # no near-tie for float32 to flip
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(predicted[clear], logits.argmax(axis=1)[clear])


@pytest.mark.parametrize(
    ("p_a", "p_w", "tau"),
    [(0, 0, 1000.0), (90, 90, 1.0), (10, 95, 0.5), (99, 99, 2.0), (50, 0, 0.01)],
)
@pytest.mark.parametrize("head", ["kept pairs", "large head: grouped products"])
def test_line_fast_path_equals_the_class_grouped_reference(
    features, p_a, p_w, tau, head, monkeypatch
):
    if head != "kept pairs":
        monkeypatch.setattr("ood_core.scores.line.PAIR_BUDGET", 0)
    state = fit_importance(_features())
    h, w, b = _f64(features)
    fast = LINE.score(features, state, blocks=[], p_a=p_a, p_w=p_w, tau=tau)
    reference = line_score(h, w, b, state.phi, p_a, p_w, tau)
    if head == "kept pairs":
        _same(fast, reference)
    else:  # float32 products (K = 1,000 heads)
        np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("eps", [0.01, 1.0, 10.0])
def test_nap_equals_numpy(features, eps):
    expected = np.mean(
        (
            features["blocks/b/max"].astype(np.float64)
            / (features["blocks/b/mean"].astype(np.float64) + eps)
        )
        ** 2,
        axis=1,
    )
    _same(get_method("nap").score(features, blocks=["b"], block="b", eps=eps), expected)


@pytest.mark.parametrize("temperature", [0.1, 1.0, 100.0])
def test_output_scores_equal_scipy(features, temperature):
    z = features["logits"].astype(np.float64)
    _same(
        get_method("energy").score(features, blocks=[], T=temperature),
        temperature * logsumexp(z / temperature, axis=1),
    )
    _same(get_method("msp").score(features, blocks=[]), softmax(z, axis=1).max(1))
    _same(
        get_method("featurenorm").score(features, blocks=["b"], block="b"),
        features["blocks/b/l2"].astype(np.float64).mean(1),
    )


def test_output_scores_keep_non_finite_rows_non_finite():
    """A NaN or infinite logit gives a NaN score (which the workspace reports), not a finite number from the
    row sums; the other rows are unaffected."""
    z = np.array(
        [[1, 2, 3], [np.nan, 0, 1], [0, np.nan, 1], [np.inf, 0, 0]], np.float32
    )
    for name in ("energy", "msp", "gen", "entropy"):
        # Quietly: the workspace, not a numpy warning, tells the user.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scores = get_method(name).score({"logits": z}, blocks=[])
        assert np.isfinite(scores[0]) and np.isnan(scores[1:]).all(), name


def test_clamped_exponentials_leave_row_sums_bit_for_bit_the_same():
    """The kernels raise exponents below −700 (``kernels.EXP_FLOOR``) before the exp (numpy's exp is ~40× slower for
    subnormal results); every row sum, and so every energy and MSP, must stay exactly what plain exp gives."""
    rng = np.random.default_rng(0)
    z = np.concatenate(
        [
            rng.uniform(-760, 0, (500, 10)),  # subnormal and zero exponentials
            rng.uniform(-1e4, 0, (500, 10)),
            np.array([[0, -705, -710, -745.5, -800, -708.4, -1e4, -699.9, -700, -701]]),
        ]
    )
    z -= z.max(axis=1, keepdims=True)
    plain = np.exp(z)
    clamped = output.exp_shifted(z)[0]
    np.testing.assert_array_equal(clamped, np.exp(np.maximum(z, kernels.EXP_FLOOR)))
    for i in range(len(z)):  # sequential sums, as the kernels add them
        assert sum(clamped[i].tolist()) == sum(plain[i].tolist())
    np.testing.assert_array_equal(clamped.sum(axis=1), plain.sum(axis=1))
    logits = (z * 0.5).astype(np.float32)  # energy at T = 0.5 doubles every gap
    exact = z.astype(np.float32).astype(np.float64) * 0.5
    expected = 0.5 * np.log(
        np.exp(exact / 0.5 - (exact / 0.5).max(1, keepdims=True)).sum(1)
    )
    np.testing.assert_allclose(
        get_method("energy").score({"logits": logits}, blocks=[], T=0.5),
        exact.max(1) + expected,
        rtol=1e-15,
        atol=1e-12,
    )


def test_shifted_rows_raise_exponents_to_the_floor_and_keep_nan():
    """``kernels.shifted_rows``: ``max((z − max z)/T, floor)`` entry by entry, a NaN logit staying NaN (numba's
    ``max`` with the NaN first returns it; a NaN must reach the workspace's check, not become the floor)."""
    rng = np.random.default_rng(11)
    logits = rng.normal(0, 30, (300, 7)).astype(np.float32)
    logits[5, 2] = np.nan
    top, shifted = np.empty(300), np.empty((300, 7))
    kernels.shifted_rows(logits, 0.5, -4.0, shifted, top)
    z = logits.astype(np.float64)
    rows = np.arange(300) != 5
    np.testing.assert_array_equal(top[rows], z[rows].max(1))
    expected = (z[rows] - z[rows].max(1, keepdims=True)) / 0.5
    np.testing.assert_array_equal(shifted[rows], np.maximum(expected, -4.0))
    assert np.isnan(shifted[5, 2])


# --- pytorch-ood on the same arrays: the scores are its outlier scores negated (it says higher = more OOD) ------------


def _head(features: dict) -> torch.nn.Linear:
    w, b = (
        torch.from_numpy(features["head/weight"]),
        torch.from_numpy(features["head/bias"]),
    )
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head.eval()


def _auroc(scores_id: np.ndarray, scores_ood: np.ndarray) -> float:
    return ood_metrics(scores_id, scores_ood)["AUROC"]


def test_pytorch_ood_output_detectors_agree():
    from pytorch_ood.detector import EnergyBased, MaxLogit, MaxSoftmax

    f = _features()
    z = torch.from_numpy(f["logits"])
    np.testing.assert_allclose(
        get_method("energy").score(f, blocks=[]),
        -EnergyBased.score(z).numpy(),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        get_method("msp").score(f, blocks=[]), -MaxSoftmax.score(z).numpy(), rtol=1e-5
    )
    np.testing.assert_allclose(
        get_method("maxlogit").score(f, blocks=[]),
        -MaxLogit.score(z).numpy(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("p", [60.0, 90.0])
def test_pytorch_ood_react_and_dice_agree(p):
    from pytorch_ood.detector import DICE, ReAct

    train, test = _features(n=500), _features()
    h, train_h = (
        torch.from_numpy(test["penultimate"]),
        torch.from_numpy(train["penultimate"]),
    )
    train_y = torch.from_numpy(train["labels"])
    train["head/weight"], train["head/bias"] = test["head/weight"], test["head/bias"]
    react = get_method("react")
    state = react.fit_state(train)
    theirs = ReAct(None, _head(test), percentile=p / 100).fit_feature_maps(
        train_h, train_y
    )
    assert theirs.threshold == pytest.approx(state.threshold(p), rel=1e-6)
    ours = react.score(test, state, blocks=[], p=p)
    np.testing.assert_allclose(ours, -theirs.predict_feature_maps(h).numpy(), rtol=1e-4)
    dice = get_method("dice")
    theirs = DICE(
        None,
        torch.from_numpy(test["head/weight"]),
        torch.from_numpy(test["head/bias"]),
        p=p / 100,
    )
    theirs.fit_features(train_h, train_y)
    np.testing.assert_allclose(
        dice.score(test, dice.fit_state(train), blocks=[], p=p),
        -theirs.predict_features(h).numpy(),
        rtol=1e-4,
    )


@pytest.mark.parametrize("variant", ["p", "s"])
def test_pytorch_ood_ash_agrees_on_dense_rows(variant):
    """pytorch-ood breaks top-k ties arbitrarily (torch.topk), so dense rows without ties; it also rounds the kept
    count as round(D·p/100), the same as OOD Lab."""
    from pytorch_ood.detector import ASH

    f = _features(shift=3.0)
    f["penultimate"] = f["penultimate"] + RNG.uniform(
        0.01, 0.02, f["penultimate"].shape
    ).astype(np.float32)
    head4 = torch.nn.Sequential(torch.nn.Flatten(), _head(f))
    theirs = ASH(None, head4, variant=f"ash-{variant}", percentile=0.65)
    expected = -theirs.predict_feature_maps(
        torch.from_numpy(f["penultimate"])[:, :, None, None]
    ).numpy()
    np.testing.assert_allclose(
        get_method(f"ash-{variant}").score(f, blocks=[], p=65), expected, rtol=1e-4
    )


def test_pytorch_ood_knn_and_mahalanobis_rank_the_same():
    from pytorch_ood.detector import KNN, Mahalanobis

    train, test, ood = _features(n=400), _features(), _features(shift=-0.4)
    for f in (test, ood):
        f["head/weight"], f["head/bias"] = train["head/weight"], train["head/bias"]
    train_h, train_y = (
        torch.from_numpy(train["penultimate"]),
        torch.from_numpy(train["labels"]),
    )
    knn, maha = get_method("knn"), get_method("mahalanobis")
    knn_state, maha_state = knn.fit_state(train), maha.fit_state(train)
    theirs_knn = KNN(None, k=5).fit_features(train_h, train_y)
    theirs_maha = Mahalanobis(None).fit_features(train_h, train_y)
    for f in (test, ood):
        h = torch.from_numpy(f["penultimate"])
        np.testing.assert_allclose(
            knn.score(f, knn_state, blocks=[], k=5),
            -theirs_knn.predict_features(h).numpy(),
            atol=1e-5,
        )
    ours = [maha.score(f, maha_state, blocks=[]) for f in (test, ood)]
    theirs = [
        -theirs_maha.predict_features(torch.from_numpy(f["penultimate"])).numpy()
        for f in (test, ood)
    ]
    assert _auroc(*ours) == pytest.approx(
        _auroc(*theirs), abs=1e-6
    )  # pytorch-ood rescales, ranks agree


def test_row_chunked_preparations_equal_the_whole_array(features, monkeypatch):
    """Mahalanobis, GEN's terms, the base logits and the sorted rows are built a chunk of rows at a time (memory at
    ImageNet size); chunks of 7 rows must give what one chunk gives."""
    from ood_core.scores import dense
    from ood_core.scores.feature_space import mahalanobis
    from ood_core.scores.output import gen_terms

    h, w, b = features["penultimate"], features["head/weight"], features["head/bias"]
    means = RNG.normal(0, 1, (6, h.shape[1]))
    precision = np.eye(h.shape[1]) + 0.1
    whole = (
        mahalanobis(h, means, precision),
        gen_terms(features["logits"]),
        shaping.base_logits(h, w, b),
    )
    monkeypatch.setattr(dense, "ROWS", 7)
    chunked = (
        mahalanobis(h, means, precision),
        gen_terms(features["logits"]),
        shaping.base_logits(h, w, b),
    )
    for one, many in zip(whole, chunked):
        np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-12)
    for one, many in zip(kernels.sorted_rows(h, len(h)), kernels.sorted_rows(h, 7)):
        np.testing.assert_array_equal(many, one)


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"),
    reason="requirements.txt installs TBB only on x86-64, where pip has wheels for it",
)
def test_numba_runs_its_parallel_kernels_on_tbb():
    """requirements.txt installs TBB so that numba picks it over GNU OpenMP (see the comment there): a missing or
    unloadable TBB would silently fall back to OpenMP and its slow launches after the app idles."""
    import numba

    # the layer is chosen at the first parallel launch
    kernels.row_sums(np.ones((4, 3)), np.empty(4))
    assert numba.threading_layer() == "tbb"


@pytest.mark.skipif(
    platform.system() != "Linux", reason="pip's TBB wheel ships libtbb.so.12 on Linux"
)
def test_the_tbb_in_use_is_the_one_this_environment_installed():
    """A venv's ``<prefix>/lib`` is not on the loader's path: without ``ood_core.jit`` loading it first, numba would
    pick up another environment's TBB or none at all (then OpenMP)."""
    import sys
    from pathlib import Path

    kernels.row_sums(np.ones((4, 3)), np.empty(4))
    own = Path(sys.prefix) / "lib" / "libtbb.so.12"
    if not own.is_file():  # the system Python: the library is wherever pip's scheme put it, on the loader's path
        own = Path(jit.TBB_LIBRARY or "")
    mapped = {
        Path(line.split()[-1]).resolve()
        for line in Path("/proc/self/maps").read_text().splitlines()
        if "libtbb.so" in line
    }
    assert mapped == {own.resolve()}, mapped


def test_doctor_reports_the_layer_the_kernels_run_on():
    import subprocess
    import sys

    import numba

    kernels.row_sums(np.ones((4, 3)), np.empty(4))
    printed = subprocess.run(
        [sys.executable, "-m", "ood_core", "doctor"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    facts = {line[:12].strip(): line[13:] for line in printed.splitlines()}
    assert f"threading layer {numba.threading_layer()}," in facts["numba"]
    assert facts["device"].startswith("cpu") or facts["device"].startswith("cuda")
    assert "threads" in facts["BLAS"] and "threads" in facts["torch"]


@pytest.mark.parametrize("elements", [1, 7, 50, 1 << 20])
def test_by_rows_equals_the_whole_array_at_any_chunk_size(monkeypatch, elements):
    from ood_core.scores import dense

    # chunks of 1 row, of 2 rows with a remainder, …, all rows
    monkeypatch.setattr(dense, "BY_ROWS_ELEMENTS", elements)
    x = np.random.default_rng(6).normal(size=(23, 3))

    # row by row and exact, so any chunking gives the same bits
    def per_rows(rows: np.ndarray) -> np.ndarray:
        return np.cumsum(rows, axis=1)[:, ::-1] * 2.0

    np.testing.assert_array_equal(dense.by_rows(per_rows, x), per_rows(x))
