import math

import numpy as np
import pytest

from ood_core.engine.cache import FeatureSet
from ood_core.errors import OODLabError, UnknownNameError
from ood_core.scores import METHODS, get_method, parse_method
from ood_core.scores.nap import nap
from ood_core.scores.output import energy, max_logit, msp


def _loop(fn, logits):
    return np.array([fn(list(row)) for row in logits])


def test_output_scores_match_per_sample_formulas():
    logits = np.random.default_rng(0).normal(0, 3, (20, 7))
    soft = lambda z: max(math.exp(v) for v in z) / sum(math.exp(v) for v in z)
    assert msp(logits) == pytest.approx(_loop(soft, logits))
    assert max_logit(logits) == pytest.approx(_loop(max, logits))
    for t in (1.0, 2.5):
        lse = lambda z, t=t: t * math.log(sum(math.exp(v / t) for v in z))
        assert energy(logits, t) == pytest.approx(_loop(lse, logits))


def test_energy_is_stable_for_large_logits():
    assert energy(np.array([[1000.0, 1000.0]]))[0] == pytest.approx(1000 + math.log(2))


def test_nap_hand_worked_example():
    # Two channels: (max 3, mean 1) → (3/2)² = 2.25 ; (max 0, mean 0) → 0 ; average 1.125 with ε = 1.
    assert nap(np.array([[3.0, 0.0]]), np.array([[1.0, 0.0]]), eps=1.0)[
        0
    ] == pytest.approx(1.125)


def test_nap_matches_full_map_brute_force():
    maps = np.maximum(np.random.default_rng(1).normal(0, 1, (6, 5, 4, 4)), 0)
    expected = [
        np.mean([(maps[i, c].max() / (maps[i, c].mean() + 0.5)) ** 2 for c in range(5)])
        for i in range(6)
    ]
    assert nap(maps.max(axis=(2, 3)), maps.mean(axis=(2, 3)), eps=0.5) == pytest.approx(
        expected
    )


def _features(n=12, blocks=("b1", "b2")) -> FeatureSet:
    rng = np.random.default_rng(3)
    arrays = {"logits": rng.normal(0, 1, (n, 4)).astype(np.float32)}
    for b in blocks:
        arrays[f"blocks/{b}/max"] = rng.uniform(1, 3, (n, 8)).astype(np.float32)
        arrays[f"blocks/{b}/mean"] = rng.uniform(0, 1, (n, 8)).astype(np.float32)
    return FeatureSet(None, {"probes": list(blocks), "rows": n}, arrays)


def test_registry_scores_use_the_right_arrays_and_defaults():
    f = _features()
    assert get_method("energy").score(f) == pytest.approx(energy(f.logits, 1.0))
    assert get_method("nap").score(f) == pytest.approx(
        nap(f.stat("b2", "max"), f.stat("b2", "mean"), 1.0)
    )
    assert get_method("nap").score(f, block="b1", eps=0.1) == pytest.approx(
        nap(f.stat("b1", "max"), f.stat("b1", "mean"), 0.1)
    )


def test_every_method_documents_paper_formula_and_parameter_ranges():
    for method in METHODS.values():
        assert method.paper.url.startswith("https://") and method.formula
        for p in method.params:
            assert not p.numeric or p.low <= p.default <= p.high
            for (
                value
            ) in p.paper.values():  # every paper default lies in the slider range
                assert not p.numeric or p.low <= value <= p.high


def test_parse_method_and_validation_errors():
    method, params = parse_method("nap:block=b1,eps=0.5")
    assert method.name == "nap" and params == {"block": "b1", "eps": "0.5"}
    f = _features()
    assert method.score(f, **params) == pytest.approx(
        nap(f.stat("b1", "max"), f.stat("b1", "mean"), 0.5)
    )
    with pytest.raises(UnknownNameError, match="unknown method 'nope'"):
        parse_method("nope")
    with pytest.raises(UnknownNameError, match="unknown block 'b9'"):
        method.score(f, block="b9")
    with pytest.raises(OODLabError, match="outside"):
        method.score(f, eps=-1)
    with pytest.raises(OODLabError, match="has no parameter"):
        get_method("msp").score(f, T=2)
