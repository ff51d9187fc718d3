"""Activation and weight shaping on the penultimate feature h, read out with the energy score (higher = more ID).

- ReAct (Sun et al., NeurIPS 2021): ``logsumexp(W·min(h, c) + b)``, c = the p-th percentile of all ID-train
  activations (default p = 90).
- DICE (Sun & Li, ECCV 2022): ``logsumexp((W ⊙ M)·h + b)``, M keeps weights whose contribution
  ``mean_train(h)_j·W[k,j]`` exceeds the p-th percentile of all K×D contributions (p = 90 CIFAR, 70 ImageNet).
- ASH-P/B/S (Djurisic et al., ICLR 2023), per sample: keep the top ``k = D − round(D·p/100)`` activations and
  zero the rest (P), set them to ``s1/k`` (B, keeps the sum s1) or scale them by ``exp(s1/s2)`` (S, s2 = their
  sum). Ties are broken towards the lower index (a stable sort), so every variant is deterministic.
- SCALE (Xu et al., ICLR 2024): ``logsumexp(exp(s1/s2)·W·h + b)``, the whole feature scaled by ASH-S's factor
  (s2 = the sum of the top ``D − round(D·p/100)`` activations) and nothing pruned; p = 85 (paper, ImageNet).

What a slider move costs: each row's activations are sorted once per scored set (``SORTED_ROWS``); ReAct then visits
only the entries above its clip value, ASH only the kept top-k; DICE visits only the kept (or only the dropped)
weights. See ``kernels`` for the compiled loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dense, kernels
from .method import Arrays, Fit, Method, Param, Prepare, arxiv
from .quantiles import quantiles

QUANTILE_GRID = np.linspace(
    0, 1, 1001
)  # ReAct thresholds for p = 0, 0.1, …, 100 exactly as np.percentile
HEAD = ("head/weight", "head/bias")


def base_logits(h: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``W·h + b`` [N, K] in float64 (a chunk of rows at a time)."""
    w_t, b = np.asarray(weight, np.float64).T, np.asarray(bias, np.float64)
    return dense.by_rows(lambda rows: np.asarray(rows, np.float64) @ w_t + b, h)


CHECKPOINTS = 32  # running sums stored at 33 positions per row (every D/32 entries) when memory allows
CHECKPOINT_BUDGET = (
    1 << 30
)  # bytes; beyond this (e.g. K = 1,000) a slider move is one matrix product with the head (``dense``)


def prepare_sorted_rows(
    features: Arrays, state: object = None
) -> dict[str, np.ndarray]:
    """Per scored set, once: rows sorted in descending order, their columns, row sums, the base logits ``W·h + b``,
    and checkpoints of each row's running sums over that order (see ``kernels.prefix_checkpoints``)."""
    h = features["penultimate"]
    values, columns = kernels.sorted_rows(h, dense.ROWS)
    n, d = values.shape
    k = len(features["head/bias"])
    stride = max(1, -(-d // CHECKPOINTS))
    slots = -(-d // stride) + 1
    rows = n if n * slots * (2 * k + 1) * 8 <= CHECKPOINT_BUDGET else 0
    sums = np.zeros((slots, rows, 2 * k + 1))
    marks = np.full((rows, slots), -np.inf, np.float32)
    if rows:
        kernels.prefix_checkpoints(values, columns, weight_t(features), stride, sums)
        positions = np.arange(0, d, stride)
        marks[:, : len(positions)] = values[:, positions]
    return {
        "sorted/values": values,
        "sorted/columns": columns,
        "sorted/row_sums": np.asarray(h).sum(axis=1, dtype=np.float64),
        "sorted/base": base_logits(h, features["head/weight"], features["head/bias"]),
        "sorted/sums": sums,
        "sorted/marks": marks,
        "sorted/stride": np.array([stride]),
    }


SORTED_ROWS = Prepare(
    name="sorted-rows",
    fn=prepare_sorted_rows,
    needs=("penultimate", *HEAD),
    store=True,
    version=3,  # 1 had 16 checkpoints per row, 2 stored them row-major
    reads_state=False,  # one copy per set for ReAct, ASH, SCALE and LINe
)


def weight_t(features: Arrays) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(features["head/weight"], np.float64).T)


def prefix_scores(
    features: Arrays, mode: int, clip: float = 0.0, keep: int = 0
) -> np.ndarray:
    """Per row, from the prepared sorted rows and checkpoints: ReAct's energy or LINe's predicted class at clip
    ``c``, or the energy of ASH-P/B/S and SCALE keeping ``keep`` activations (``kernels.prefix_scores``); without
    checkpoints (large heads) one matrix product per move (``dense_prefix_scores``)."""
    if features["sorted/sums"].shape[1] != len(features["sorted/values"]):
        return dense_prefix_scores(features, mode, clip, keep)
    out = np.empty(len(features["sorted/base"]))
    energy = mode != kernels.CLIPPED_ARGMAX
    shifted = np.empty((len(out) if energy else 0, len(features["head/bias"])))
    kernels.prefix_scores(
        features["sorted/values"], features["sorted/columns"], features["sorted/marks"], weight_t(features),
        int(features["sorted/stride"][0]), features["sorted/sums"], features["sorted/base"],
        np.asarray(features["head/bias"], np.float64),
        features["sorted/row_sums"], mode, float(clip), kernels.float32_floor(clip), int(keep), out, shifted,
    )  # fmt: skip
    if energy:
        kernels.finish_energy(shifted, out)
    return out


def dense_prefix_scores(
    features: Arrays, mode: int, clip: float = 0.0, keep: int = 0
) -> np.ndarray:
    """``prefix_scores`` for heads too large for checkpoints (K = 1,000): the shaped features of each chunk of rows
    times the head (``dense.head_scores``): ReAct ``min(h, c)``; ASH-P the kept top-k values (the sorted order's
    first ``keep``, so ties break as in the kernel), ASH-B their indicator scaled by s1/k, ASH-S the kept values
    scaled by exp(s1/s2). SCALE needs no product: ``exp(s1/s2)·(W·h) + b`` from the stored base logits."""
    values, columns = features["sorted/values"], features["sorted/columns"]
    weight, bias = features["head/weight"], np.asarray(features["head/bias"])
    rows, dim = values.shape
    if mode <= kernels.CLIPPED_ARGMAX:
        h, ceiling = features["penultimate"], np.float32(clip)
        return dense.head_scores(
            lambda a, b: np.minimum(np.asarray(h[a:b], np.float32), ceiling),
            rows,
            weight,
            bias,
            argmax=mode == kernels.CLIPPED_ARGMAX,
        )
    row_sums = np.asarray(features["sorted/row_sums"], np.float64)
    kept_sum = np.asarray(values[:, :keep]).sum(axis=1, dtype=np.float64)
    factor, positive = np.ones(rows), kept_sum > 0  # exp(s1/s2); 1 for an all-zero row
    factor[positive] = np.exp(row_sums[positive] / kept_sum[positive])
    if mode == kernels.SCALE:
        base, b = features["sorted/base"], np.asarray(bias, np.float64)
        out = np.empty(rows)
        for a in range(0, rows, dense.ROWS):
            chunk = slice(a, a + dense.ROWS)
            out[chunk] = logsumexp(factor[chunk, None] * (base[chunk] - b) + b)
        return out

    def kept(a: int, b: int) -> np.ndarray:
        x = np.zeros((b - a, dim), np.float32)
        top = values[a:b, :keep] if mode != kernels.ASH_B else np.float32(1)
        np.put_along_axis(x, np.asarray(columns[a:b, :keep], np.intp), top, axis=1)
        return x

    scale = {kernels.ASH_P: None, kernels.ASH_B: row_sums / keep, kernels.ASH_S: factor}
    return dense.head_scores(kept, rows, weight, bias, scale=scale[mode])


def logsumexp(logits: np.ndarray) -> np.ndarray:
    out = np.empty(len(logits))
    kernels.lse_rows(np.ascontiguousarray(logits, np.float64), out)
    return out


@dataclass(frozen=True)
class ActivationQuantiles:
    """Quantiles of all ID-train penultimate activations on ``QUANTILE_GRID``."""

    quantiles: np.ndarray

    def threshold(self, percentile: float) -> float:
        """The ``percentile``-th percentile of all ID-train activations (linear, as ``np.percentile``)."""
        return float(np.interp(percentile / 100, QUANTILE_GRID, self.quantiles))


ACTIVATION_QUANTILES = Fit(
    name="activation-quantiles",
    fn=lambda train: ActivationQuantiles(
        quantiles(np.asarray(train["penultimate"], np.float32), QUANTILE_GRID)
    ),
    needs=("penultimate",),
    state=ActivationQuantiles,
)

REACT_P = Param(
    "p",
    90.0,
    50.0,
    99.9,
    0.1,
    "Clip at this percentile of ID train activations (paper: 90).",
    paper={"cifar10": 90.0, "cifar100": 90.0, "imagenet": 90.0},
)
REACT = Method(
    name="react",
    label="ReAct",
    family="shaping",
    needs=("penultimate", *HEAD),
    formula=r"S=\log\sum_k e^{(W\min(h,c)+b)_k},\; c=\mathrm{pct}_p(h_{train})",
    paper=arxiv(
        "ReAct: Out-of-distribution Detection With Rectified Activations",
        "NeurIPS 2021",
        "2111.12797",
    ),
    score_fn=lambda f, state, p: prefix_scores(
        f, kernels.REACT_ENERGY, clip=state.threshold(p)
    ),
    params=(REACT_P,),
    fit=ACTIVATION_QUANTILES,
    prepare=SORTED_ROWS,
)


@dataclass(frozen=True)
class DiceOrder:
    """Each class's head weights by decreasing contribution ``mean_train(h)_j·W[k,j]``: per class k, the sorted
    contributions, their columns and the weights W[k, j] in that order ([K, D] each)."""

    contribution: np.ndarray
    columns: np.ndarray
    weights: np.ndarray


def fit_dice(train) -> DiceOrder:
    mean = np.asarray(train["penultimate"], np.float64).mean(axis=0)
    weight = np.asarray(train["head/weight"], np.float64)
    contribution = mean[None, :] * weight
    columns = np.argsort(-contribution, axis=1, kind="stable")
    return DiceOrder(
        np.take_along_axis(contribution, columns, axis=1),
        columns,
        np.take_along_axis(weight, columns, axis=1),
    )


DICE_ORDER = Fit(
    name="dice-order",
    fn=fit_dice,
    needs=("penultimate", "head/weight"),
    state=DiceOrder,
    version=2,  # 1 stored one global order
)


DICE_CHECKPOINTS = 32  # per class: every D/32 weights (the walk between checkpoints is what a slider move costs)


def dice_stride(dim: int) -> int:
    return max(1, -(-dim // DICE_CHECKPOINTS))


def prepare_dice(features: Arrays, state: DiceOrder) -> dict[str, np.ndarray]:
    """Per scored set: each row's running logit of every class over that class's weights in contribution order, at
    33 checkpoints ([K, slot, N]), and the activations transposed ([D, N], so that the few columns a move walks are
    contiguous runs). Empty arrays when the checkpoints exceed ``CHECKPOINT_BUDGET`` (ImageNet: K = 1,000); the
    score then uses one masked matrix product per move instead."""
    h = features["penultimate"]
    k, d = state.columns.shape
    stride = dice_stride(d)
    slots = -(-d // stride) + 1
    if len(h) * k * slots * 8 > CHECKPOINT_BUDGET:
        return {
            "dice/checkpoints": np.zeros((k, slots, 0)),
            "dice/columns": np.zeros((d, 0), np.float32),
        }
    out = np.empty((k, slots, len(h)))
    kernels.class_checkpoints(h, state.columns, state.weights, stride, out)
    columns = np.ascontiguousarray(np.asarray(h, np.float32).T)
    return {"dice/checkpoints": out, "dice/columns": columns}


def dice_score(features: Arrays, state: DiceOrder, p: float) -> np.ndarray:
    """``logsumexp((W ⊙ M)·h + b)``: M keeps the weights whose contribution exceeds the p-th percentile of all K×D
    contributions, i.e. the first ``count_k`` weights of each class in decreasing order."""
    threshold = np.percentile(state.contribution, p)
    counts = (state.contribution > threshold).sum(axis=1)
    h = features["penultimate"]
    bias = np.asarray(features["head/bias"], np.float64)
    if features["dice/checkpoints"].shape[2] != len(h):
        return _masked_energy(h, state, counts, bias)
    slot, walk = _dice_walk(state, counts, features["dice/checkpoints"].shape[1])
    out, shifted = np.empty(len(h)), np.empty((len(h), len(bias)))
    kernels.class_walk_energy(
        features["dice/checkpoints"], slot, features["dice/columns"], *walk, bias, out, shifted
    )  # fmt: skip
    kernels.finish_energy(shifted, out)
    return out


def _dice_walk(
    state: DiceOrder, counts: np.ndarray, slots: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per class, the checkpoint nearer to its kept count and the weights between the two: added walking forward
    from the checkpoint below, subtracted walking back from the one above. Returns the slots [K] and the walk's
    (class, column, signed weight) triples."""
    k, d = state.columns.shape
    stride = dice_stride(d)
    below = counts // stride
    above = np.minimum(below + 1, slots - 1)
    back = np.minimum(above * stride, d) - counts < counts - below * stride
    slot = np.where(back, above, below)
    classes, columns, weights = [], [], []
    for q in range(k):
        lo, hi = sorted((int(counts[q]), int(min(slot[q] * stride, d))))
        classes.append(np.full(hi - lo, q))
        columns.append(state.columns[q, lo:hi])
        weights.append(state.weights[q, lo:hi] * (-1.0 if back[q] else 1.0))
    walk = (
        np.concatenate(classes).astype(np.int64),
        np.concatenate(columns).astype(np.int64),
        np.concatenate(weights).astype(np.float64),
    )
    return slot.astype(np.int64), walk


def _masked_energy(
    h: np.ndarray, state: DiceOrder, counts: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """DICE without checkpoints: ``logsumexp(h·(W ⊙ M)ᵀ + b)``, one matrix product per chunk of rows
    (``dense.head_scores``)."""
    k, d = state.columns.shape
    kept = np.where(np.arange(d)[None, :] < counts[:, None], state.weights, 0.0)
    masked = np.zeros((k, d), np.float32)
    np.put_along_axis(masked, state.columns, kept.astype(np.float32), axis=1)
    return dense.head_scores(lambda a, b: h[a:b], len(h), masked, bias)


DICE_P = Param(
    "p",
    90.0,
    0.0,
    99.0,
    1.0,
    "Weight sparsity percentile (paper: 90 CIFAR, 70 ImageNet).",
    paper={"cifar10": 90.0, "cifar100": 90.0, "imagenet": 70.0},
)
DICE = Method(
    name="dice",
    label="DICE",
    family="shaping",
    needs=("penultimate", *HEAD),
    formula=r"S=\log\sum_k e^{((W\odot M)h+b)_k},\; M=[\bar h_j W_{kj}>\mathrm{pct}_p]",
    paper=arxiv(
        "DICE: Leveraging Sparsification for Out-of-Distribution Detection",
        "ECCV 2022",
        "2111.09805",
    ),
    score_fn=dice_score,
    params=(DICE_P,),
    fit=DICE_ORDER,
    prepare=Prepare(
        name="dice-checkpoints",
        fn=prepare_dice,
        needs=("penultimate",),
        store=True,
        version=3,  # 1 had 32 checkpoints per class, 2 had 64 and no transposed activations
    ),
)


def kept_count(dim: int, percentile: float) -> int:
    """How many activations ASH keeps: ``D − round(D·p/100)``, at least one."""
    return max(1, dim - int(np.round(dim * percentile / 100)))


ASH_MODES = {"p": kernels.ASH_P, "b": kernels.ASH_B, "s": kernels.ASH_S}


def top_k_score(features: Arrays, percentile: float, mode: int) -> np.ndarray:
    """``prefix_scores`` in ``mode`` (ASH-P/B/S or SCALE) at the kept count ``kept_count(D, percentile)``."""
    keep = kept_count(features["sorted/values"].shape[1], percentile)
    return prefix_scores(features, mode, keep=keep)


def ash_score(features: Arrays, percentile: float, variant: str) -> np.ndarray:
    """``logsumexp(W·ASH(h) + b)`` [N] from the running sums at the kept count k: ASH-P ``Σ W_j v_j``, ASH-B
    ``(s1/k)·Σ W_j``, ASH-S ``exp(s1/s2)·Σ W_j v_j`` (s2 = the kept sum; factor 1 for an all-zero row), + b."""
    return top_k_score(features, percentile, ASH_MODES[variant])


ASH_PAPER = arxiv(
    "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
    "ICLR 2023",
    "2209.09858",
)


def ash_param(default: float, cifar: float) -> Param:
    return Param(
        "p",
        default,
        0.0,
        99.0,
        1.0,
        f"Prune all but the top (100−p)% activations (paper: {default:g} ImageNet, {cifar:g} CIFAR).",
        paper={"cifar10": cifar, "cifar100": cifar, "imagenet": default},
    )


def _ash_method(variant: str, default: float, cifar: float) -> Method:
    return Method(
        name=f"ash-{variant}",
        label=f"ASH-{variant.upper()}",
        family="shaping",
        needs=("penultimate", *HEAD),
        formula=rf"S=\log\sum_k e^{{(W\,\mathrm{{ASH}}_{variant.upper()}(h)+b)_k}}",
        paper=ASH_PAPER,
        score_fn=lambda f, state, p: ash_score(f, p, variant),
        params=(ash_param(default, cifar),),
        prepare=SORTED_ROWS,
    )


SCALE = Method(
    name="scale",
    label="SCALE",
    family="shaping",
    needs=("penultimate", *HEAD),
    formula=r"S=\log\sum_k e^{(r\,Wh+b)_k},\; r=\exp(s_1/s_2),\; s_1=\textstyle\sum_j h_j,\;"
    r"s_2=\sum_{j\in\text{top-}k} h_j",
    paper=arxiv(
        "Scaling for Training Time and Post-hoc Out-of-distribution Detection Enhancement",
        "ICLR 2024",
        "2310.00227",
    ),
    score_fn=lambda f, state, p: top_k_score(f, p, kernels.SCALE),
    params=(
        Param(
            "p",
            85.0,
            0.0,
            99.0,
            1.0,
            "The scale factor reads the top (100−p)% activations; none is pruned (paper: 85 on ImageNet).",
            paper={"imagenet": 85.0},
        ),
    ),
    prepare=SORTED_ROWS,
)

ASH_P = _ash_method("p", 60.0, 90.0)
ASH_B = _ash_method("b", 65.0, 95.0)
ASH_S = _ash_method("s", 90.0, 95.0)

METHODS = (REACT, DICE, ASH_P, ASH_B, ASH_S, SCALE)
