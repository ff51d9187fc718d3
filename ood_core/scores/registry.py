"""The method registry: every score is a record (parameters, formula, paper, sign) next to one pure function.

Pages, CLI flags and tables are generated from ``METHODS``; adding a method means adding one ``Method`` entry.
Every score follows one convention: higher = more in-distribution. A method's function receives the scored
FeatureSet, the ID train statistics (``None`` unless ``needs_train``) and the resolved parameter values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..cache import FeatureSet
from ..errors import OODLabError, UnknownNameError
from ..train_stats import KNN_MAX_K, TrainStats
from . import baselines, feature_space, line, shaping
from .nap import nap, nap_combined

LAST_BLOCK = "last"
SELECTED_BLOCK = "selected"  # the NormRatio choice; resolved by ood_core.evaluation.WorkspaceFeatures
ScoreFn = Callable[[FeatureSet, TrainStats | None, dict], np.ndarray]


@dataclass(frozen=True)
class Param:
    """A hyperparameter: ``float`` or ``int`` with a slider range, or ``block`` (a probed block, default the last)."""

    name: str
    default: float | str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    help: str = ""
    kind: str = "float"


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    url: str


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    family: str
    needs: str
    formula: str
    paper: Paper
    fn: ScoreFn = field(repr=False)
    params: tuple[Param, ...] = ()
    needs_train: bool = False
    reinference: bool = (
        False  # True: runs the model again (ODIN), cached per parameter setting
    )

    def defaults(self) -> dict[str, float | str]:
        return {p.name: p.default for p in self.params}

    def resolve(
        self, blocks: list[str], params: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        """Defaults overridden by ``params``, validated against the ranges and the probed ``blocks``."""
        values = {**self.defaults(), **(params or {})}
        unknown = set(values) - {p.name for p in self.params}
        if unknown:
            raise OODLabError(
                f"method '{self.name}' has no parameter {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(p.name for p in self.params) or 'none'}"
            )
        for p in self.params:
            if p.kind == "block":
                if values[p.name] == SELECTED_BLOCK:
                    raise OODLabError(
                        f"{self.name}: block '{SELECTED_BLOCK}' is the NormRatio choice, resolved from the ID "
                        "train and jigsaw features: score through WorkspaceFeatures, or name a block"
                    )
                block = (
                    blocks[-1] if values[p.name] == LAST_BLOCK else str(values[p.name])
                )
                if block not in blocks:
                    raise UnknownNameError("block", block, blocks)
                values[p.name] = block
                continue
            try:
                number = float(values[p.name])
            except (TypeError, ValueError) as exc:
                raise OODLabError(
                    f"{self.name}: parameter {p.name} must be a number, got {values[p.name]!r}"
                ) from exc
            if not p.low <= number <= p.high:
                raise OODLabError(
                    f"{self.name}: {p.name}={number:g} is outside [{p.low:g}, {p.high:g}]"
                )
            values[p.name] = int(number) if p.kind == "int" else number
        return values

    def validate(
        self, blocks: list[str], params: Mapping[str, object] | None = None
    ) -> None:
        """Check ``params`` before any work; ``block="selected"`` is accepted (resolved later by NormRatio)."""
        values = {**self.defaults(), **(params or {})}
        self.resolve(
            blocks,
            {k: blocks[-1] if v == SELECTED_BLOCK else v for k, v in values.items()},
        )

    def score(
        self, features: FeatureSet, train: TrainStats | None = None, **params
    ) -> np.ndarray:
        """Scores [N] of every sample in ``features`` (higher = more ID)."""
        if self.needs_train and train is None:
            raise OODLabError(
                f"{self.label} needs statistics of the ID train features; extract the ID train split"
            )
        return self.fn(features, train, self.resolve(features.blocks, params))


def _paper(title: str, venue: str, arxiv: str) -> Paper:
    return Paper(title, venue, f"https://arxiv.org/abs/{arxiv}")


ENERGY = _paper(
    "Energy-based Out-of-distribution Detection", "NeurIPS 2020", "2010.03759"
)
REACT = _paper(
    "ReAct: Out-of-distribution Detection With Rectified Activations",
    "NeurIPS 2021",
    "2111.12797",
)
DICE = _paper(
    "DICE: Leveraging Sparsification for Out-of-Distribution Detection",
    "ECCV 2022",
    "2111.09805",
)
ASH = _paper(
    "Extremely Simple Activation Shaping for Out-of-Distribution Detection",
    "ICLR 2023",
    "2209.09858",
)
KNN = _paper(
    "Out-of-Distribution Detection with Deep Nearest Neighbors",
    "ICML 2022",
    "2204.06507",
)
NAP = _paper(
    "Out-of-Distribution Detection using Neural Activation Prior",
    "arXiv 2024",
    "2402.18162",
)

NORMRATIO = _paper(
    "Block Selection Method for Using Feature Norm in Out-of-Distribution Detection",
    "CVPR 2023",
    "2212.02295",
)
SELECTED_BLOCK_PARAM = Param(
    "block",
    SELECTED_BLOCK,
    kind="block",
    help="Block to read; 'selected' = argmax NormRatio on jigsaw'd ID train images.",
)
BLOCK = Param(
    "block",
    LAST_BLOCK,
    kind="block",
    help="Probed block whose post-ReLU map NAP reads (paper: the last).",
)
NAP_EPS = Param(
    "eps",
    1.0,
    0.01,
    10.0,
    0.01,
    "ε in NAP's denominator, for numerical stability (paper: 1).",
)
T = Param("T", 1.0, 0.1, 100.0, 0.1, "Temperature T of the energy score.")
REACT_P = Param(
    "p",
    90.0,
    50.0,
    99.9,
    0.1,
    "Clip at this percentile of ID train activations (paper: 90).",
)
DICE_P = Param(
    "p",
    90.0,
    0.0,
    99.0,
    1.0,
    "Weight sparsity percentile (paper: 90 CIFAR, 70 ImageNet).",
)
KNN_K = Param(
    "k",
    50,
    1,
    KNN_MAX_K,
    1,
    "k-th nearest neighbour (paper: 50 on CIFAR-10).",
    kind="int",
)


def _ash_param(default: float) -> Param:
    return Param(
        "p",
        default,
        0.0,
        99.0,
        1.0,
        f"Prune all but the top (100−p)% activations (paper, ImageNet: {default:g}).",
    )


def _lambda(default: float) -> Param:
    return Param(
        "lambda",
        default,
        0.0,
        1.0,
        0.05,
        "λ: 1 = the base method alone, 0 = NAP alone.",
    )


def _react(f: FeatureSet, t: TrainStats, p: dict) -> np.ndarray:
    return shaping.react(f.penultimate, t.weight, t.bias, t.react_threshold(p["p"]))


def _dice(f: FeatureSet, t: TrainStats, p: dict) -> np.ndarray:
    return shaping.dice(
        f.penultimate,
        t.weight,
        t.bias,
        shaping.dice_mask(t.weight, t.mean_activation, p["p"]),
    )


def _ash(variant: str) -> ScoreFn:
    return lambda f, t, p: shaping.ash_energy(
        f.penultimate, f["head/weight"], f["head/bias"], p["p"], variant
    )


def _knn(f: FeatureSet, t: TrainStats, p: dict) -> np.ndarray:
    return feature_space.knn_from_distances(
        feature_space.neighbour_distances(f, t), p["k"]
    )


def _odin(f: FeatureSet, t: TrainStats | None, p: dict) -> np.ndarray:
    from ..pipeline import odin_feature_set

    return np.asarray(odin_feature_set(f, p["T"], p["eps"])["odin"])


def _line(f: FeatureSet, t: TrainStats, p: dict) -> np.ndarray:
    phi = line.importance(t.weight, t.class_means)
    return line.line_score(
        f.penultimate, t.weight, t.bias, phi, p["p_a"], p["p_w"], p["tau"]
    )


def _feature_norm(f: FeatureSet, t: TrainStats | None, p: dict) -> np.ndarray:
    return np.asarray(f.stat(p["block"], "l2"), np.float64).mean(axis=1)


def _nap(f: FeatureSet, t: TrainStats | None, p: dict) -> np.ndarray:
    return nap(f.stat(p["block"], "max"), f.stat(p["block"], "mean"), p["eps"])


# NAP-X bases: (function, whether its scores are already > 0, extra parameters, λ default from the paper (CIFAR-10))
NAP_BASES: dict[str, tuple[ScoreFn, bool, tuple[Param, ...], float, bool]] = {
    "energy": (lambda f, t, p: baselines.energy(f.logits), False, (), 0.4, False),
    "react": (_react, False, (REACT_P,), 0.4, True),
    "ash": (_ash("s"), False, (_ash_param(90.0),), 0.5, False),
    "dice": (_dice, False, (DICE_P,), 0.5, True),
    "msp": (lambda f, t, p: baselines.msp(f.logits), True, (), 0.5, False),
    "knn": (_knn, False, (KNN_K,), 0.5, True),
}


def _nap_x(base: str) -> Method:
    fn, positive, extra, lam, needs_train = NAP_BASES[base]
    label = {
        "energy": "Energy",
        "react": "ReAct",
        "ash": "ASH-S",
        "dice": "DICE",
        "msp": "MSP",
        "knn": "KNN",
    }[base]
    mapping = r"S_X" if positive else r"\operatorname{softplus}(S_X)"
    return Method(
        f"nap-{base}",
        f"NAP-{label}",
        "activation",
        "a block's per-channel max/mean + the base method's arrays",
        rf"S=\left({mapping}\right)^{{\lambda}}\,S_{{NAP}}^{{1-\lambda}}",
        NAP,
        lambda f, t, p: nap_combined(fn(f, t, p), _nap(f, t, p), p["lambda"], positive),
        (_lambda(lam), *extra, BLOCK, NAP_EPS),
        needs_train=needs_train,
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("msp", "MSP", "output", "logits", r"S=\max_k \operatorname{softmax}(z)_k",
               _paper("A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks",
                      "ICLR 2017", "1610.02136"),
               lambda f, t, p: baselines.msp(f.logits)),
        Method("maxlogit", "MaxLogit", "output", "logits", r"S=\max_k z_k",
               _paper("Scaling Out-of-Distribution Detection for Real-World Settings", "ICML 2022", "1911.11132"),
               lambda f, t, p: baselines.max_logit(f.logits)),
        Method("energy", "Energy", "output", "logits", r"S=T\log\sum_k e^{z_k/T}", ENERGY,
               lambda f, t, p: baselines.energy(f.logits, p["T"]), (T,)),
        Method("odin", "ODIN", "output", "re-inference with perturbed inputs",
               r"S=\max_k \operatorname{softmax}\!\left(f(x-\epsilon\,\operatorname{sign}(-\nabla_x \log S_{\hat y}))/T\right)_k",
               _paper("Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks",
                      "ICLR 2018", "1706.02690"),
               _odin,
               (Param("T", 1000.0, 1.0, 1000.0, 1.0, "Softmax temperature (paper: 1000)."),
                Param("eps", 0.0014, 0.0, 0.01, 0.0002, "Perturbation size in [0,1] pixel units (paper: 0.0014).")),
               reinference=True),
        Method("mahalanobis", "Mahalanobis", "feature", "penultimate + ID train class means and covariance",
               r"S=-\min_c (h-\mu_c)^\top \Sigma^{-1} (h-\mu_c)",
               _paper("A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
                      "NeurIPS 2018", "1807.03888"),
               lambda f, t, p: feature_space.mahalanobis(f.penultimate, t.class_means, t.precision),
               needs_train=True),
        Method("knn", "KNN", "feature", "normalised penultimate + ID train bank",
               r"S=-\lVert z-z_{(k)}\rVert_2,\; z=h/\lVert h\rVert", KNN, _knn, (KNN_K,), needs_train=True),
        Method("react", "ReAct", "shaping", "penultimate + ID train activation percentile",
               r"S=\log\sum_k e^{(W\min(h,c)+b)_k},\; c=\mathrm{pct}_p(h_{train})", REACT, _react, (REACT_P,),
               needs_train=True),
        Method("dice", "DICE", "shaping", "penultimate + ID train mean activation",
               r"S=\log\sum_k e^{((W\odot M)h+b)_k},\; M=[\bar h_j W_{kj}>\mathrm{pct}_p]", DICE, _dice, (DICE_P,),
               needs_train=True),
        Method("ash-p", "ASH-P", "shaping", "penultimate", r"S=\log\sum_k e^{(W\,\mathrm{ASH}_P(h)+b)_k}", ASH,
               _ash("p"), (_ash_param(60.0),)),
        Method("ash-b", "ASH-B", "shaping", "penultimate", r"S=\log\sum_k e^{(W\,\mathrm{ASH}_B(h)+b)_k}", ASH,
               _ash("b"), (_ash_param(65.0),)),
        Method("ash-s", "ASH-S", "shaping", "penultimate", r"S=\log\sum_k e^{(W\,\mathrm{ASH}_S(h)+b)_k}", ASH,
               _ash("s"), (_ash_param(90.0),)),
        Method("nap", "NAP", "activation", "per-channel max and mean of a block",
               r"S_{NAP}=\frac{1}{C}\sum_{c=1}^{C}\left(\frac{\max_c}{\operatorname{mean}_c+\epsilon}\right)^2", NAP,
               _nap, (BLOCK, NAP_EPS)),
        *[_nap_x(base) for base in NAP_BASES],
        Method("line", "LINe", "shaping", "penultimate + ID train class means (Shapley importance)",
               r"S=\log\sum_k e^{z_k},\; z=(W\odot M_{\hat c})(\min(h,\tau)\odot m_{\hat c})+b",
               _paper("LINe: Out-of-Distribution Detection by Leveraging Important Neurons", "CVPR 2023", "2303.13995"),
               _line,
               (Param("p_a", 90.0, 0.0, 99.0, 1.0, "Activation pruning: keep neurons above this percentile of the "
                      "predicted class's importance (paper CIFAR-10: 90; ImageNet: 10)."),
                Param("p_w", 90.0, 0.0, 99.0, 1.0, "Weight pruning percentile of |Φ_c|·W (paper CIFAR-10: 90)."),
                Param("tau", 1.0, 0.01, 1000.0, 0.01, "Clip activations at τ (absolute; paper CIFAR: 1.0, ImageNet: "
                      "0.8).")),
               needs_train=True),
        Method("featurenorm", "FeatureNorm", "activation", "per-channel L2 norms of a block",
               r"S=FN_b(x)=\frac{1}{C}\sum_{c=1}^{C}\lVert \mathrm{ReLU}(A_c)\rVert_2,\; b=\arg\max_b NR(b)", NORMRATIO,
               _feature_norm, (SELECTED_BLOCK_PARAM,)),
        Method("nap-nr", "NAP (NormRatio block)", "activation", "per-channel max/mean of the NormRatio block",
               r"S_{NAP}\text{ on } b=\arg\max_b NR(b)", NAP, _nap, (SELECTED_BLOCK_PARAM, NAP_EPS)),
    ]
}  # fmt: skip


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UnknownNameError("method", name, list(METHODS))
    return METHODS[name]


def parse_method(spec: str) -> tuple[Method, dict[str, str]]:
    """``'nap-energy:lambda=0.4,block=layer3.0'`` → (the NAP-Energy method, {'lambda': '0.4', 'block': 'layer3.0'})."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise OODLabError(
                f"method spec '{spec}': expected name:param=value[,param=value]"
            )
        params[key.strip()] = value.strip()
    return get_method(name.strip().lower()), params
