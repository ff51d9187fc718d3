"""Observations: the sentences flip when the data do (a workspace where each paper's claim holds and one where it
does not), and deltas against a base at chance never read as progress."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ood_core import observations as notes
from ood_core import tables
from ood_core.engine.cache import FeatureSet
from ood_core.scores.line import Evidence, id_evidence
from ood_core.workspace import LoadedWorkspace
from tests.synthetic import synthetic_features

BLOCKS = ("b1", "b2", "b3")


def _workspace(peaked: str) -> LoadedWorkspace:
    """Synthetic sets whose NAP prior separates ID from OOD on block ``peaked`` only (ID channels peaked there)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.5, (4, 16)).astype(np.float32)

    def features(n: int, ood: bool) -> FeatureSet:
        f = synthetic_features(rng, n, weight=weight, blocks=BLOCKS)
        arrays = {name: f[name] for name in f.names}
        for block in BLOCKS:
            mean = arrays[f"blocks/{block}/mean"]
            scale = 4.0 if block == peaked and not ood else 1.0
            arrays[f"blocks/{block}/max"] = (
                mean * (1 + rng.exponential(scale, mean.shape))
            ).astype(np.float32)
        return FeatureSet(f.root, f.meta, arrays)

    return LoadedWorkspace(
        features(200, False),
        features(300, False),
        {"near": features(200, True), "far": features(200, True)},
    )


def test_nap_depth_agrees_when_the_last_block_is_best_and_says_so_otherwise():
    holds = notes.nap_depth(tables.block_sweep(_workspace("b3")), list(BLOCKS))
    fails = notes.nap_depth(tables.block_sweep(_workspace("b2")), list(BLOCKS))
    assert (
        holds.agrees is True
        and "As the paper finds" in holds.text
        and "b3" in holds.text
    )
    assert fails.agrees is False and "Unlike the paper" in fails.text
    assert (
        "best block here is **b2**" in fails.text and "rank" in fails.text and fails.why
    )


def _means(combined, base, nap):
    return notes.combination("NAP-Energy", 0.4, combined, "Energy", base, nap)


def test_combination_names_the_part_it_fails_to_beat():
    assert _means(90, 80, 85).agrees is True
    worse = _means(84, 80, 85)
    assert worse.agrees is False and "not better than NAP alone" in worse.text
    both = _means(70, 80, 85)
    assert "Energy or NAP alone" in both.text


def test_block_selection_sentences_follow_choice_and_norm_direction():
    good = notes.block_selection("layer2", "layer2", 0.8, 75.0)
    bad = notes.block_selection("layer4", "layer2", -0.4, 1.4)
    assert [o.agrees for o in good] == [True, True]
    assert [o.agrees for o in bad] == [False, False]
    assert "best block on the real OOD sets is **layer2**" in bad[0].text
    assert "disagree in order" in bad[0].text
    assert "**smaller** for ID" in bad[1].text and "below chance" in bad[1].text


def test_line_sentences_compare_with_energy_and_the_accuracy_cost():
    energy = {"letters": 82.8, "faces": 34.4, "mean": 58.6}
    better = notes.line_vs_energy(
        {"letters": 90, "faces": 40, "mean": 65},
        energy,
        Evidence(97.0, 96.5, 11.0, 9.0),
    )
    worse = notes.line_vs_energy(
        {"letters": 60.3, "faces": 78.2, "mean": 69.3},
        energy,
        Evidence(97.0, 40.0, 11.0, 9.0),
    )
    assert [o.agrees for o in better] == [True, True]
    assert [o.agrees for o in worse] == [False, False]
    assert (
        "improves the mean AUROC over Energy (69.3 vs 58.6) but is below Energy on 1 of 2 sets"
        in worse[0].text
    )
    assert "largest gap on letters" in worse[0].text
    lower = notes.line_vs_energy(
        {"letters": 50.0, "faces": 30.0, "mean": 40.0},
        energy,
        Evidence(97.0, 97.0, 11.0, 2.0),
    )
    assert "does not improve on Energy (mean AUROC 40.0 (below chance" in lower[0].text
    assert lower[1].agrees is False and "falls from 11.0 to 2.0" in lower[1].text
    assert "falls from 97.0 % to 40.0 %" in worse[1].text


def test_background_separates_the_term_from_fine_tuning_over_seeds():
    deltas = {"Energy": [-1.0, -1.2, -0.9], "NAP": [4.0, 4.2, 3.9]}
    asks = notes.background(0.1, deltas, None)
    assert asks[0].agrees is False and "not** less confident" in asks[0].text
    assert "sd over 3 seeds" in asks[0].text and asks[0].p < 0.05
    assert asks[-1].agrees is None and "α = 0 control" in asks[-1].text
    controlled = notes.background(
        0.1, deltas, {"Energy": [2.0, 2.1, 1.8], "NAP": [1.0, 1.1, 0.9]}
    )
    energy, nap = controlled[1], controlled[2]
    assert energy.agrees is False and "adds **-3.0**" in energy.text
    assert nap.agrees is True and "adds **+3.0**" in nap.text
    assert notes.background(0.0, deltas, None)[0].agrees is None


def test_a_claim_about_alpha_resting_on_seeds_that_disagree_is_no_clear_difference():
    """One seed up, one down: the mean says +1.0, the spread says nothing."""
    deltas = {"Energy": [6.0, -4.0, 1.0]}
    [energy, _] = notes.settle(notes.background(0.1, deltas, None))
    assert energy.agrees is None and "no clear change over the seeds" in energy.text


@pytest.mark.parametrize(
    ("base", "flagged"), [(50.85, True), (44.0, False), (82.8, False)]
)
def test_a_delta_against_a_base_at_chance_is_not_progress(base, flagged):
    assert notes.at_chance(base) is flagged
    assert ("at chance" in notes.compare_to_base(base + 10, base)) is flagged


def test_best_methods_names_the_winner_per_set_and_the_chance_methods():
    table = pd.DataFrame(
        {
            "method": ["A", "A", "A", "B", "B", "B"],
            "ood_set": ["near", "far", "mean"] * 2,
            "AUROC": [70.0, 99.0, 84.5, 52.0, 48.0, 50.0],
        }
    )
    best, weak = notes.best_methods(table)
    assert "**A** (84.5)" in best.text and "near → A (70.0)" in best.text
    assert weak.text.startswith("At or below chance on average: B.")


def test_id_evidence_matches_a_per_sample_count():
    rng = np.random.default_rng(4)
    h = np.maximum(rng.normal(1, 1, (50, 6)), 0)
    weight, bias = rng.normal(0, 1, (3, 6)), np.zeros(3)
    logits = h @ weight.T
    labels = logits.argmax(1)
    labels[:5] = (labels[:5] + 1) % 3  # five wrong labels
    phi = np.abs(rng.normal(0, 1, (3, 6)))
    evidence = id_evidence(
        h, logits, labels, weight, bias, phi, 0.0, 0.0, 1e9
    )  # no pruning, no clipping
    assert evidence.accuracy_before == evidence.accuracy_after == pytest.approx(90.0)
    assert evidence.logit_after == pytest.approx(evidence.logit_before)
    assert evidence.logit_before == pytest.approx(np.mean([max(row) for row in logits]))


def _nap_workspace(n: int, seed: int = 1):
    """Two blocks read by NAP (one channel, mean 0, so S_NAP = max²): b1 a less noisy view of the same latent score
    than b2, the last block. With n = 2,000 per side b1 is significantly better (paired DeLong p ≈ 0.006); with
    half the samples the gap is no longer significant (p ≈ 0.76)."""
    import uuid

    from ood_core.engine.cache import FeatureSet
    from ood_core.workspace import LoadedWorkspace

    rng = np.random.default_rng(seed)
    latent = {"id": rng.normal(1, 1, n), "ood": rng.normal(0, 1, n)}
    noise = {"b1": 0.5, "b2": 0.62}
    sets = {}
    for side in ("id", "ood"):
        arrays = {
            "logits": rng.normal(0, 1, (n, 3)).astype(np.float32),
            "labels": rng.integers(0, 3, n) if side == "id" else np.full(n, -1),
        }
        for block in ("b1", "b2"):
            value = latent[side] + rng.normal(0, noise[block], n) + 8.0
            arrays[f"blocks/{block}/max"] = value[:, None]
            arrays[f"blocks/{block}/mean"] = np.zeros((n, 1))
        meta = {"probes": ["b1", "b2"], "rows": n, "created": uuid.uuid4().hex}
        sets[side] = FeatureSet(None, meta, arrays)
    return LoadedWorkspace(sets["id"], None, {"ood": sets["ood"]})


def _subset(features, rows):
    from ood_core.tuning import subset

    return features.with_sets(
        {"ood": subset(features.ood["ood"], rows, "half")}
    ).__class__(
        subset(features.id_test, rows, "half"),
        None,
        {"ood": subset(features.ood["ood"], rows, "half")},
    )


def test_a_claim_unlike_the_paper_becomes_no_clear_difference_when_the_samples_are_halved():
    from ood_core import claims
    from ood_core.observations import settle

    full = _nap_workspace(2000)
    [depth] = settle([claims.nap_depth(full, "a context")])
    assert depth.agrees is False and depth.text.startswith(
        "Unlike the paper, the best block here is **b1**"
    )
    half = _subset(full, np.arange(1000))
    [depth] = settle([claims.nap_depth(half, "a context")])
    assert depth.agrees is None
    assert depth.text.startswith(
        "No clear difference between the best block b1 and the last, b2: Δ +"
    )
