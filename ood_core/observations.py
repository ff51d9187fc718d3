"""Observations: plain sentences generated from the current numbers, saying whether each paper's claim holds here.

Every page of the app opens its figures with a short "what you should see here" block built from these functions.
Each function takes the numbers a page already computed (metric tables, NormRatio, accuracies) and returns
``Observation`` records: the sentence, whether the data agree with the paper's claim (``None`` when the paper makes
none), and, when they disagree, one line on why that can happen. No Streamlit here: the pages render the records,
and tests check the sentences flip when the data do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from .scores.line import Evidence

CHANCE_BAND = 5.0  # AUROC points around 50 that count as "at chance"


@dataclass(frozen=True)
class Observation:
    """One sentence about the data; ``agrees`` with the paper's claim (``None``: no claim), ``why`` it can differ."""

    text: str
    agrees: bool | None = None
    why: str = ""


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
    sweep: pd.DataFrame, blocks: list[str], context: str = SMALL_MODEL
) -> Observation:
    """The NAP paper: the last block (before global pooling) is the best place to read the prior.

    ``sweep``: ``tables.block_sweep`` rows (block, ood_set, AUROC, …) including the ``mean`` rows."""
    mean = mean_by(sweep, "block").reindex(blocks)
    best, last = str(mean.idxmax()), blocks[-1]
    rank = int((mean > mean[last]).sum()) + 1
    if best == last:
        return Observation(
            f"As the paper finds, the last block **{last}** is the best place to read NAP: mean AUROC "
            f"{mean[last]:.1f} (next best: {mean.drop(last).max():.1f}).",
            True,
        )
    return Observation(
        f"Unlike the paper, the best block here is **{best}** (mean AUROC {mean[best]:.1f}); the last block "
        f"**{last}** scores {mean[last]:.1f}, rank {rank} of {len(blocks)}.",
        False,
        f"The paper's finding is about large networks: {context}.",
    )


def combination(
    label: str, lam: float, combined: float, base_label: str, base: float, nap: float
) -> Observation:
    """NAP-X's claim: the combination beats both of its parts (mean AUROCs in %)."""
    parts = (
        f"{base_label} alone {describe_auroc(base)}, NAP alone {describe_auroc(nap)}"
    )
    if combined > max(base, nap):
        return Observation(
            f"At λ = {lam:.2f}, **{label}** ({combined:.1f}) beats both of its parts ({parts}).",
            True,
        )
    below = [name for name, v in ((base_label, base), ("NAP", nap)) if v >= combined]
    return Observation(
        f"At λ = {lam:.2f}, **{label}** ({combined:.1f}) is not better than {' or '.join(below)} alone "
        f"({parts}).",
        False,
        "A product of two scores helps only where both rank ID above OOD; when one part is much weaker or reversed "
        "on these sets, it drags the product down. Move λ towards the stronger part and watch the curve below.",
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
) -> list[Observation]:
    """The Block Selection paper: the NormRatio choice finds a good block, and FeatureNorm is larger for ID."""
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
            )
        )
    if chosen_auroc >= 50:
        out.append(
            Observation(
                f"At {chosen}, FeatureNorm is larger for ID than for OOD, as the paper says: mean AUROC "
                f"{describe_auroc(chosen_auroc)}.",
                True,
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
            )
        )
    return out


def line_vs_energy(
    line: Mapping[str, float],
    energy: Mapping[str, float],
    evidence: Evidence,
    context: str = SMALL_MODEL,
) -> list[Observation]:
    """LINe's claims: pruning and clipping improve on the energy score, and ID samples keep their evidence.

    ``line`` / ``energy``: AUROC (%) per OOD set and ``mean``; ``evidence``: ID accuracy and mean winning logit of
    the original and the pruned head."""
    sets = [s for s in line if s != "mean"]
    worse = [s for s in sets if line[s] < energy[s]]
    line, energy = {**line, "mean": overall(line)}, {**energy, "mean": overall(energy)}
    out = []
    if line["mean"] > energy["mean"] and not worse:
        out.append(
            Observation(
                f"LINe improves on Energy on every set (mean AUROC {line['mean']:.1f} vs {energy['mean']:.1f}).",
                True,
            )
        )
    else:
        gap = max(sets, key=lambda s: energy[s] - line[s])
        mean = (
            f"improves the mean AUROC over Energy ({line['mean']:.1f} vs {energy['mean']:.1f}) but "
            if line["mean"] > energy["mean"]
            else f"does not improve on Energy (mean AUROC {describe_auroc(line['mean'])} vs "
            f"{energy['mean']:.1f}) and "
        )
        out.append(
            Observation(
                f"LINe {mean}is below Energy on {len(worse)} of {len(sets)} sets (largest gap on {gap}: "
                f"{line[gap]:.1f} vs {energy[gap]:.1f}).",
                False,
                "The paper's defaults were chosen for ResNets with 512–2,048 penultimate neurons; with few neurons "
                f"per class, pruning removes evidence ID samples need ({context}).",
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
    deltas: Mapping[str, float],
    control: Mapping[str, float] | None,
) -> list[Observation]:
    """Local Background features: the background term makes the model less confident on OOD (Energy improves) and
    the gain is the term's, not fine-tuning's (it beats the α = 0 control).

    ``deltas`` / ``control``: per method label, mean AUROC after − before, for α and for the α = 0 control."""
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
        out.append(
            Observation(
                f"With α = {alpha:g}, Energy's mean AUROC changes by {energy:+.1f}"
                + (
                    ": the model is less confident on OOD, as the paper says."
                    if energy > 0
                    else ": the model is **not** less confident on OOD here."
                ),
                energy > 0,
                ""
                if energy > 0
                else "Energy reads the logits; the background term acts on local features, and a short fine-tune "
                "of a small model may reshape the logits only a little.",
            )
        )
    if control is None:
        out.append(
            Observation(
                "Train the α = 0 control (same k and epochs) to tell the background term's effect from fine-tuning's.",
                None,
            )
        )
        return out
    for label, delta in deltas.items():
        extra = delta - control[label]
        out.append(
            Observation(
                f"{label}: {delta:+.1f} with α = {alpha:g} vs {control[label]:+.1f} for the α = 0 control, so the "
                f"background term itself adds **{extra:+.1f}**.",
                extra > 0,
                ""
                if extra > 0
                else "Fine-tuning alone moves the scores too; what the term adds can be smaller than that noise.",
            )
        )
    return out


def best_methods(table: pd.DataFrame) -> list[Observation]:
    """What the Compare table says: the best method per OOD set and methods at or below chance.

    ``table``: ``tables.all_methods_table`` rows (method, ood_set, AUROC, …)."""
    auroc = table.pivot_table(
        index="method", columns="ood_set", values="AUROC", sort=False
    )
    if "mean" not in auroc:  # a single OOD set
        auroc["mean"] = mean_by(table, "method")
    best = auroc["mean"].idxmax()
    out = [
        Observation(
            f"Best mean AUROC here: **{best}** ({auroc.loc[best, 'mean']:.1f}). Per set: "
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
