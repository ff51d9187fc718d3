"""Observations: plain sentences generated from the current numbers, saying whether each paper's claim holds here.

Every page of the app opens its figures with a short "what you should see here" block built from these functions.
Each function takes the numbers a page already computed (metric tables, NormRatio, accuracies, and the paired
comparisons behind each claim: ``metrics.Difference``) and returns ``Observation`` records: the sentence, whether
the data agree with the paper's claim (``None`` when the paper makes none), when they disagree one line on why that
can happen, and the claim's p-value. ``settle`` then keeps "as in the paper" and "unlike the paper" only for the
claims that are significant at 5 % after Holm's correction over the page's claims; the others say "no clear
difference" with the difference and its interval. No Streamlit here: the pages render the records, and tests
check the sentences flip when the data do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import ttest_1samp

from .metrics import Z95, Difference, holm
from .scores.line import Evidence

CHANCE_BAND = 5.0  # AUROC points around 50 that count as "at chance"


@dataclass(frozen=True)
class Observation:
    """One sentence about the data; ``agrees`` with the paper's claim (``None``: no claim), ``why`` it can differ;
    ``p``: the claim's p-value (``None``: a fact, not an estimate), ``unclear``: the sentence when it is not
    significant."""

    text: str
    agrees: bool | None = None
    why: str = ""
    p: float | None = None
    unclear: str = ""


def settle(items: list[Observation], level: float = 0.05) -> list[Observation]:
    """The page's claims after Holm's correction over those with a p-value: a claim that is not significant
    keeps no badge and says ``unclear`` instead."""
    tested = [
        i
        for i, item in enumerate(items)
        if item.p is not None and item.agrees is not None
    ]
    adjusted = holm([items[i].p for i in tested]) if tested else []
    out = list(items)
    for i, p in zip(tested, adjusted):
        if p >= level:
            out[i] = Observation(out[i].unclear or out[i].text, None, p=p)
        else:
            out[i] = replace(out[i], p=p)
    return out


def unclear(what: str, difference: Difference) -> str:
    """``No clear difference between …: Δ +0.8 (95 % CI −0.5 to +2.1).``"""
    return f"No clear difference {what}: Δ {difference.describe()}."


def overall(per_set: Mapping[str, float]) -> float:
    """The ``mean`` entry of per-set values, or the mean of the sets when there is none (a single OOD set)."""
    if "mean" in per_set:
        return float(per_set["mean"])
    return float(sum(per_set.values()) / len(per_set))


def mean_by(frame: pd.DataFrame, index: str, column: str = "AUROC") -> pd.Series:
    """``column`` of the ``mean`` rows of a metrics frame (columns ``index``, ``ood_set``, ``column``) by ``index``,
    or the mean over the sets when the frame has no ``mean`` rows (a single OOD set)."""
    rows = frame[frame.ood_set == "mean"]
    if len(rows):
        return rows.set_index(index)[column]
    return frame.groupby(index, sort=False)[column].mean()


def at_chance(auroc: float) -> bool:
    """Whether an AUROC (%) is within ``CHANCE_BAND`` points of 50 (a coin flip)."""
    return abs(auroc - 50.0) < CHANCE_BAND


def describe_auroc(auroc: float) -> str:
    """``'61.2'``, with ``' (chance level)'`` or ``' (below chance: the score is reversed)'`` where it applies."""
    if at_chance(auroc):
        return f"{auroc:.1f} (chance level)"
    if auroc < 50:
        return f"{auroc:.1f} (below chance: the score ranks OOD as more ID)"
    return f"{auroc:.1f}"


def compare_to_base(value: float, base: float) -> str:
    """A delta that never reads as progress over a base at chance: ``'+3.1 vs 48.9 (a base at chance)'``."""
    delta = f"{value - base:+.1f}"
    return f"{delta} vs a base at chance ({base:.1f})" if at_chance(base) else delta


SMALL_MODEL = (
    "the demo is a small 4-block ResNet (16–64 channels) on 8×8 digits upscaled to 32 px; the papers use ResNets "
    "and ViTs with 512–2,048 channels on 32–224 px natural images"
)


def nap_depth(
    sweep: pd.DataFrame,
    blocks: list[str],
    context: str = SMALL_MODEL,
    gap: Difference | None = None,
) -> Observation:
    """The NAP paper: the last block (before global pooling) is the best place to read the prior.

    ``sweep``: ``tables.block_sweep`` rows (block, ood_set, AUROC, …) including the ``mean`` rows; ``gap``: the
    paired difference of mean AUROC between the best block and the runner-up (when the last block is best) or
    between the best block and the last."""
    mean = mean_by(sweep, "block").reindex(blocks)
    best, last = str(mean.idxmax()), blocks[-1]
    rank = int((mean > mean[last]).sum()) + 1
    p = gap.p if gap is not None else None
    if best == last:
        runner = str(mean.drop(last).idxmax()) if len(blocks) > 1 else last
        return Observation(
            f"As the paper finds, the last block **{last}** is the best place to read NAP: mean AUROC "
            f"{mean[last]:.1f} (next best: {runner}, {mean.drop(last).max():.1f}).",
            True,
            p=p,
            unclear=unclear(
                f"between the last block {last} and the next best, {runner}", gap
            )
            if gap
            else "",
        )
    return Observation(
        f"Unlike the paper, the best block here is **{best}** (mean AUROC {mean[best]:.1f}); the last block "
        f"**{last}** scores {mean[last]:.1f}, rank {rank} of {len(blocks)}.",
        False,
        f"The paper's finding is about large networks: {context}.",
        p=p,
        unclear=unclear(f"between the best block {best} and the last, {last}", gap)
        if gap
        else "",
    )


def combination(
    label: str,
    lam: float,
    combined: float,
    base_label: str,
    base: float,
    nap: float,
    vs_base: Difference | None = None,
    vs_nap: Difference | None = None,
) -> Observation:
    """NAP-X's claim: the combination beats both of its parts (mean AUROCs in %; ``vs_base`` / ``vs_nap``: the
    paired differences combined − part). Beating both needs both differences significant (p = the larger one);
    the claim fails when the combination is significantly below a part."""
    parts = (
        f"{base_label} alone {describe_auroc(base)}, NAP alone {describe_auroc(nap)}"
    )
    tested = vs_base is not None and vs_nap is not None
    if combined > max(base, nap):
        return Observation(
            f"At λ = {lam:.2f}, **{label}** ({combined:.1f}) beats both of its parts ({parts}).",
            True,
            p=max(vs_base.p, vs_nap.p) if tested else None,
            unclear=(
                f"At λ = {lam:.2f}, {label} ({combined:.1f}) is not clearly above both parts ({parts}): "
                f"Δ vs {base_label} {vs_base.describe()}, Δ vs NAP {vs_nap.describe()}."
            )
            if tested
            else "",
        )
    below = [name for name, v in ((base_label, base), ("NAP", nap)) if v >= combined]
    worst = min(
        (d for d in (vs_base, vs_nap) if d is not None),
        key=lambda d: d.delta,
        default=None,
    )
    return Observation(
        f"At λ = {lam:.2f}, **{label}** ({combined:.1f}) is not better than {' or '.join(below)} alone "
        f"({parts}).",
        False,
        "A product of two scores helps only where both rank ID above OOD; when one part is much weaker or reversed "
        "on these sets, it drags the product down. Move λ towards the stronger part and watch the curve below.",
        p=worst.p if worst is not None else None,
        unclear=(
            f"At λ = {lam:.2f}, {label} ({combined:.1f}) is not clearly different from its parts ({parts}): "
            f"Δ vs {base_label} {vs_base.describe()}, Δ vs NAP {vs_nap.describe()}."
        )
        if tested
        else "",
    )


def mean_auroc_per_block(table: pd.DataFrame) -> pd.Series:
    """Mean FeatureNorm AUROC per block of ``tables.block_selection_table`` (its one set's with a single OOD set)."""
    frame = table.set_index("block")
    if "AUROC mean" in frame:
        return frame["AUROC mean"]
    return frame.filter(like="AUROC ").mean(axis=1)


def block_selection(
    chosen: str,
    best: str,
    rho: float,
    chosen_auroc: float,
    context: str = SMALL_MODEL,
    gap: Difference | None = None,
    interval: tuple[float, float] | None = None,
) -> list[Observation]:
    """The Block Selection paper: the NormRatio choice finds a good block, and FeatureNorm is larger for ID.

    ``gap``: the paired difference of mean AUROC, best block − chosen block; ``interval``: the chosen block's
    mean AUROC 95 % interval (the second claim is tested against 50)."""
    out = []
    if chosen == best:
        out.append(
            Observation(
                f"NormRatio picks **{chosen}**, which is also the best block on the real OOD sets "
                f"(rank correlation NR ↔ AUROC {rho:+.2f}).",
                True,
            )
        )
    else:
        out.append(
            Observation(
                f"NormRatio picks **{chosen}**, but the best block on the real OOD sets is **{best}**; across "
                f"blocks NormRatio and AUROC correlate {rho:+.2f}"
                + (" (they disagree in order)." if rho < 0 else "."),
                False,
                "Jigsaw puzzles are only a proxy for real OOD data: a block can tell puzzles from ID images without "
                f"telling real OOD sets apart, and {context}.",
                p=gap.p if gap else None,
                unclear=unclear(
                    f"between NormRatio's choice {chosen} and the best block on the real OOD sets, {best}",
                    gap,
                )
                if gap
                else "",
            )
        )
    p = _p_against_chance(chosen_auroc, interval)
    no_gap = (
        f"At {chosen}, FeatureNorm is not clearly larger or smaller for ID than for OOD: mean AUROC "
        f"{chosen_auroc:.1f} (95 % CI {interval[0]:.1f} to {interval[1]:.1f}) includes 50."
        if interval
        else ""
    )
    if chosen_auroc >= 50:
        out.append(
            Observation(
                f"At {chosen}, FeatureNorm is larger for ID than for OOD, as the paper says: mean AUROC "
                f"{describe_auroc(chosen_auroc)}.",
                True,
                p=p,
                unclear=no_gap,
            )
        )
    else:
        out.append(
            Observation(
                f"At {chosen}, FeatureNorm is **smaller** for ID than for the OOD sets on average: mean AUROC "
                f"{describe_auroc(chosen_auroc)}. Compare the histograms below: jigsaw and real OOD can sit on "
                "opposite sides of ID.",
                False,
                "The direction of the norm gap depends on the block and the data; the paper measured it on ResNets "
                "trained on CIFAR and ImageNet.",
                p=p,
                unclear=no_gap,
            )
        )
    return out


def _p_against_chance(
    auroc: float, interval: tuple[float, float] | None
) -> float | None:
    """The two-sided p-value of AUROC = 50 % from a symmetric (Wald) 95 % interval."""
    if interval is None:
        return None
    se = (interval[1] - interval[0]) / (2 * Z95)
    if se <= 0:
        return 0.0 if auroc != 50 else 1.0
    return math.erfc(abs(auroc - 50) / se / math.sqrt(2))


def line_vs_energy(
    line: Mapping[str, float],
    energy: Mapping[str, float],
    evidence: Evidence,
    context: str = SMALL_MODEL,
    gap: Difference | None = None,
    set_gaps: Mapping[str, Difference] | None = None,
) -> list[Observation]:
    """LINe's claims: pruning and clipping improve on the energy score, and ID samples keep their evidence.

    ``line`` / ``energy``: AUROC (%) per OOD set and ``mean``; ``evidence``: ID accuracy and mean winning logit of
    the original and the pruned head; ``gap`` / ``set_gaps``: paired differences LINe − Energy (mean, per set).
    With them, a set counts as worse only when it is significantly so."""
    sets = [s for s in line if s != "mean"]
    worse = [
        s
        for s in sets
        if line[s] < energy[s] and (set_gaps is None or set_gaps[s].significant)
    ]
    line, energy = {**line, "mean": overall(line)}, {**energy, "mean": overall(energy)}
    out = []
    no_gap = unclear("between LINe and Energy (mean AUROC)", gap) if gap else ""
    if line["mean"] > energy["mean"] and not worse:
        out.append(
            Observation(
                f"LINe improves on Energy (mean AUROC {line['mean']:.1f} vs {energy['mean']:.1f})"
                + (" with no set clearly worse." if set_gaps else " on every set."),
                True,
                p=gap.p if gap else None,
                unclear=no_gap,
            )
        )
    else:
        gap_set = max(sets, key=lambda s: energy[s] - line[s])
        mean = (
            f"improves the mean AUROC over Energy ({line['mean']:.1f} vs {energy['mean']:.1f}) but "
            if line["mean"] > energy["mean"]
            else f"does not improve on Energy (mean AUROC {describe_auroc(line['mean'])} vs "
            f"{energy['mean']:.1f}) and "
        )
        p = None
        if line["mean"] <= energy["mean"] and gap is not None:
            p = gap.p
        elif worse and set_gaps is not None:
            p = min(set_gaps[s].p for s in worse)
        out.append(
            Observation(
                f"LINe {mean}is below Energy on {len(worse) or len([s for s in sets if line[s] < energy[s]])} "
                f"of {len(sets)} sets (largest gap on {gap_set}: {line[gap_set]:.1f} vs {energy[gap_set]:.1f}).",
                False,
                "The paper's defaults were chosen for ResNets with 512–2,048 penultimate neurons; with few neurons "
                f"per class, pruning removes evidence ID samples need ({context}).",
                p=p,
                unclear=no_gap,
            )
        )
    e = evidence
    if e.accuracy_before - e.accuracy_after > 1.0:
        out.append(
            Observation(
                f"ID samples lose evidence too: ID accuracy falls from {e.accuracy_before:.1f} % to "
                f"{e.accuracy_after:.1f} % with this pruning (see the sample's logits below).",
                False,
                "Pruning is class-wise: when a class's important neurons also fire for other classes, keeping only "
                "them changes the prediction.",
            )
        )
    elif e.logit_after < 0.5 * e.logit_before:
        out.append(
            Observation(
                f"ID samples keep their class (accuracy {e.accuracy_after:.1f} %, {e.accuracy_before:.1f} % before) "
                f"but not their evidence: their winning logit falls from {e.logit_before:.1f} to "
                f"{e.logit_after:.1f} on average (see the sample's logits below).",
                False,
                "Clipping at τ and pruning most neurons shrink every logit; what matters for detection is whether "
                "OOD logits shrink more, which the AUROC above measures.",
            )
        )
    else:
        out.append(
            Observation(
                f"ID samples keep their evidence: accuracy {e.accuracy_after:.1f} % ({e.accuracy_before:.1f} % "
                f"before), winning logit {e.logit_after:.1f} on average ({e.logit_before:.1f} before).",
                True,
            )
        )
    return out


def background(
    alpha: float,
    deltas: Mapping[str, Sequence[float]],
    control: Mapping[str, Sequence[float]] | None,
) -> list[Observation]:
    """Local Background features: the background term makes the model less confident on OOD (Energy improves) and
    the gain is the term's, not fine-tuning's (it beats the α = 0 control).

    ``deltas`` / ``control``: per method label, the change of mean AUROC (after − before), one value per seed, for
    α and for the α = 0 control with the same seeds. Claims rest on the spread over seeds: a one-sample t-test of
    Energy's changes, a paired t-test (by seed) of α's changes against the control's."""
    if alpha == 0:
        return [
            Observation(
                "α = 0 is plain fine-tuning: the control every α > 0 should be compared with.",
                None,
            )
        ]
    out = []
    energy = deltas.get("Energy")
    if energy is not None:
        mean, spread = _mean_sd(energy)
        p = _t_test(energy)
        out.append(
            Observation(
                f"With α = {alpha:g}, Energy's mean AUROC changes by {mean:+.1f}{spread}"
                + (
                    ": the model is less confident on OOD, as the paper says."
                    if mean > 0
                    else ": the model is **not** less confident on OOD here."
                ),
                mean > 0,
                ""
                if mean > 0
                else "Energy reads the logits; the background term acts on local features, and a short fine-tune "
                "of a small model may reshape the logits only a little.",
                p=p,
                unclear=f"With α = {alpha:g}, Energy's mean AUROC changes by {mean:+.1f}{spread}: no clear change "
                f"over the seeds (t-test p = {p:.2f})."
                if p is not None
                else "",
            )
        )
    if control is None:
        out.append(
            Observation(
                "Train the α = 0 control (same k, epochs and seeds) to tell the background term's effect from "
                "fine-tuning's.",
                None,
            )
        )
        return out
    for label, values in deltas.items():
        extra = [a - c for a, c in zip(values, control[label])]
        mean, spread = _mean_sd(extra)
        p = _t_test(extra)
        out.append(
            Observation(
                f"{label}: {np.mean(values):+.1f} with α = {alpha:g} vs {np.mean(control[label]):+.1f} for the α = 0 "
                f"control, so the background term itself adds **{mean:+.1f}**{spread}.",
                mean > 0,
                ""
                if mean > 0
                else "Fine-tuning alone moves the scores too; what the term adds can be smaller than that noise.",
                p=p,
                unclear=f"{label}: the background term adds {mean:+.1f}{spread} over the α = 0 control: no clear "
                f"difference over the seeds (paired t-test p = {p:.2f})."
                if p is not None
                else "",
            )
        )
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, str]:
    """The mean and `` ± sd over n seeds`` (empty for one seed)."""
    if len(values) < 2:
        return float(np.mean(values)), " (one seed)"
    return float(
        np.mean(values)
    ), f" ± {np.std(values, ddof=1):.1f} (sd over {len(values)} seeds)"


def _t_test(values: Sequence[float]) -> float | None:
    """The two-sided p-value of a one-sample t-test of mean 0 (``None`` with fewer than 2 values)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return None
    if np.allclose(values, values[0]):
        return 0.0 if values[0] != 0 else 1.0
    return float(ttest_1samp(values, 0.0).pvalue)


def best_methods(
    table: pd.DataFrame, lead: Difference | None = None
) -> list[Observation]:
    """What the Compare table says: the best method per OOD set and methods at or below chance.

    ``table``: ``tables.all_methods_table`` rows (method, ood_set, AUROC, …); ``lead``: the paired difference
    of mean AUROC between the best method and the runner-up."""
    auroc = table.pivot_table(
        index="method", columns="ood_set", values="AUROC", sort=False
    )
    if "mean" not in auroc:  # a single OOD set
        auroc["mean"] = mean_by(table, "method")
    ranked = auroc["mean"].sort_values(ascending=False)
    best = ranked.index[0]
    lead_text = ""
    if lead is not None and len(ranked) > 1:
        runner = ranked.index[1]
        lead_text = (
            f" It is clearly ahead of the runner-up, {runner} (Δ {lead.describe()})."
            if lead.significant
            else f" It is not clearly ahead of the runner-up, {runner} (Δ {lead.describe()}): a tie."
        )
    out = [
        Observation(
            f"Best mean AUROC here: **{best}** ({auroc.loc[best, 'mean']:.1f}).{lead_text} Per set: "
            + ", ".join(
                f"{s} → {auroc[s].idxmax()} ({auroc[s].max():.1f})"
                for s in auroc.columns
                if s != "mean"
            )
            + "."
        )
    ]
    weak = [m for m in auroc.index if auroc.loc[m, "mean"] < 50 + CHANCE_BAND]
    if weak:
        out.append(
            Observation(
                f"At or below chance on average: {', '.join(weak)}. A green delta against one of these is not "
                "progress.",
                None,
            )
        )
    return out


def pruning_tradeoff(pareto: pd.DataFrame) -> str:
    """What the accuracy/AUROC chart shows, read from its own numbers: where the AUROC peaks and what ID accuracy
    costs there, and where accuracy is lowest and what the AUROC is there."""
    base = pareto.iloc[0]  # p = 0: the unpruned head
    peak = pareto.loc[pareto["AUROC"].idxmax()]
    worst = pareto.loc[pareto["ID accuracy"].idxmin()]
    spread = pareto["ID accuracy"].max() - pareto["ID accuracy"].min()
    text = (
        f"Mean AUROC peaks at p = {peak.p:g} ({peak.AUROC:.1f}, {peak.AUROC - base.AUROC:+.1f} vs no pruning), where "
        f"ID accuracy is {peak['ID accuracy']:.1f} % ({peak['ID accuracy'] - base['ID accuracy']:+.1f})."
    )
    if spread < 1.0:
        return text + (
            f" ID accuracy stays within {spread:.2f} points at every level, so pruning costs no accuracy on this "
            "model; on large models the paper reports accuracy falling as p grows."
        )
    return text + (
        f" Accuracy is lowest at p = {worst.p:g} ({worst['ID accuracy']:.1f} %), where the mean AUROC is "
        f"{worst.AUROC:.1f}"
        + (": pruning that far loses both." if worst.AUROC < peak.AUROC else ".")
    )
