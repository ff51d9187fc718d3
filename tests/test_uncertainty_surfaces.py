"""Where the intervals and paired tests reach the user: ``evaluate --ci``, reports, the cards' delta colours and
Compare's column leaders, each checked against a brute-force DeLong computed here from the scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from ood_core import cli, reports
from ood_core.comparisons import column_leaders
from ood_core.metrics import Difference
from ood_core.scores import get_method
from ood_core.tables import evaluate
from ood_core.workspace import Workspace, load_workspace
from pages.ui.cards import _delta

Z95 = norm.ppf(0.975)


def _components(id_scores: np.ndarray, ood_scores: np.ndarray):
    """DeLong's structural components from the full ID × OOD comparison matrix (ties ½)."""
    psi = (id_scores[:, None] > ood_scores[None, :]) + 0.5 * (
        id_scores[:, None] == ood_scores[None, :]
    )
    return psi.mean(axis=1), psi.mean(axis=0)


def _brute_interval(id_scores, ood_scores) -> tuple[float, float, float]:
    v10, v01 = _components(np.asarray(id_scores, float), np.asarray(ood_scores, float))
    auc = v10.mean()
    se = np.sqrt(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size)
    return 100 * auc, 100 * (auc - Z95 * se), 100 * (auc + Z95 * se)


def _brute_paired_p(a, b, name: str) -> float:
    """Two-sided p of DeLong's paired test of AUROC(a) − AUROC(b) on one OOD set."""
    a10, a01 = _components(np.asarray(a[0], float), np.asarray(a[1][name], float))
    b10, b01 = _components(np.asarray(b[0], float), np.asarray(b[1][name], float))
    d10, d01 = a10 - b10, a01 - b01
    se = np.sqrt(d10.var(ddof=1) / d10.size + d01.var(ddof=1) / d01.size)
    return float(2 * norm.sf(abs(d10.mean()) / se))


@pytest.fixture(scope="module")
def demo(demo_model):
    return load_workspace(Workspace())


def test_evaluate_ci_prints_and_writes_the_delong_and_bootstrap_intervals(
    demo, tmp_path, capsys
):
    out = tmp_path / "ci.csv"
    argv = ["evaluate", "--ood", "letters", "noise", "--methods", "energy", "nap"]
    assert cli.main([*argv, "--ci", "--resamples", "200", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "95% intervals: AUROC DeLong, FPR95/AUPR stratified bootstrap (200 resamples)"
        in printed
    )
    assert "AUROC 95% CI" in printed and "FPR95 95% CI" in printed
    table = pd.read_csv(out).set_index(["method", "ood_set"])
    for label, name in (("Energy", "energy"), ("NAP", "nap")):
        id_scores, ood = demo.scores(get_method(name))
        for ood_set in ("letters", "noise"):
            row = table.loc[(label, ood_set)]
            auc, low, high = _brute_interval(id_scores, ood[ood_set])
            assert row["AUROC"] == pytest.approx(auc, abs=1e-6)
            assert (row["AUROC low"], row["AUROC high"]) == pytest.approx(
                (max(low, 0), min(high, 100)), abs=1e-6
            )
            for metric in ("FPR95", "AUPR-In", "AUPR-Out"):
                assert row[f"{metric} low"] <= row[metric] <= row[f"{metric} high"]
    # without --ci: no interval columns beyond AUROC's, and no bootstrap in the header
    assert cli.main(argv) == 0
    plain = capsys.readouterr().out
    assert "95% CI" not in plain and "bootstrap" not in plain


def test_reports_carry_the_intervals_in_markdown_latex_and_csv(demo, tmp_path, capsys):
    out = tmp_path / "reports"
    argv = ["report", "--methods", "energy", "--resamples", "100", "--out", str(out)]
    assert cli.main(argv) == 0
    capsys.readouterr()
    report = reports.saved(out)[0][0]
    rows = report.table.set_index("ood_set")
    id_scores, ood = demo.scores(get_method("energy"))
    auc, low, high = _brute_interval(id_scores, ood["letters"])
    assert (
        rows.loc["letters", "AUROC low"],
        rows.loc["letters", "AUROC high"],
    ) == pytest.approx((low, high), abs=1e-6)
    cell = f"{auc:.2f} [{low:.2f}, {high:.2f}]"
    assert cell in next(out.glob("*.md")).read_text()
    tex = f"{auc:.2f} {{\\scriptsize[{low:.2f}, {high:.2f}]}}"
    assert tex in next(out.glob("*.tex")).read_text()
    csv = pd.read_csv(next(out.glob("*.csv")))
    assert {"AUROC low", "AUROC high", "FPR95 low", "FPR95 high"} <= set(csv.columns)


@pytest.mark.parametrize(
    ("value", "base", "difference", "suffix", "colour"),
    [
        (90.0, 80.0, Difference(10, 6, 14, 0.001), "", "normal"),
        (80.0, 90.0, Difference(-10, -14, -6, 0.001), "", "normal"),
        (90.0, 88.0, Difference(2, -1, 5, 0.2), " (no clear difference)", "off"),
        (70.0, 30.0, Difference(40, 35, 45, 1e-9), " (base below chance)", "off"),
        (51.0, 50.2, Difference(0.8, 0.1, 1.5, 0.01), " (at chance)", "off"),
        (90.0, 80.0, None, "", "normal"),
    ],
)
def test_a_card_delta_is_coloured_only_when_the_paired_test_says_it_is_real(
    value, base, difference, suffix, colour
):
    text, mode = _delta(value, base, "base", difference)
    assert text == f"{value - base:+.1f} vs base{suffix}" and mode == colour


def test_compare_column_leaders_are_the_best_two_and_their_paired_delong_test(demo):
    names = ("msp", "energy", "nap", "knn", "mahalanobis")
    settings = [(get_method(n), {}) for n in names]
    table = evaluate(demo, settings)
    leaders = column_leaders(demo, table, settings)
    assert set(leaders) == {*demo.ood, "mean"}
    scored = {m.label: demo.scores(m, p) for m, p in settings}
    outcomes = set()
    for name in demo.ood:
        aurocs = {
            label: roc_auc_score(
                np.r_[np.ones(len(s[0])), np.zeros(len(s[1][name]))],
                np.r_[s[0], s[1][name]],
            )
            for label, s in scored.items()
        }
        best, runner = sorted(aurocs, key=aurocs.get, reverse=True)[:2]
        leader = leaders[name]
        assert (leader.best, leader.runner) == (best, runner)
        p = _brute_paired_p(scored[best], scored[runner], name)
        assert leader.lead.p == pytest.approx(p, rel=1e-6, abs=1e-12)
        assert leader.tied == (p >= 0.05)
        outcomes.add(leader.tied)
    assert outcomes == {True, False}, "the demo has both a clear leader and a tie"
