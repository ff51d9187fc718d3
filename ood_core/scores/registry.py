"""The method registry: every score is a record (parameters, formula, paper, sign) next to one pure function.

Pages, CLI flags and tables are generated from ``METHODS``; adding a method means adding one ``Method`` entry.
Every score follows one sign convention: higher = more in-distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..cache import FeatureSet
from ..errors import OODLabError, UnknownNameError
from . import baselines, nap

LAST_BLOCK = "last"


@dataclass(frozen=True)
class Param:
    """A hyperparameter: numeric with a slider range, or ``kind="block"`` (a probed block name, default the last)."""

    name: str
    default: float | str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    help: str = ""
    kind: str = "float"  # "float" or "block"


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
    fn: Callable[..., np.ndarray] = field(repr=False)
    params: tuple[Param, ...] = ()

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
                block = (
                    blocks[-1] if values[p.name] == LAST_BLOCK else str(values[p.name])
                )
                if block not in blocks:
                    raise UnknownNameError("block", block, blocks)
                values[p.name] = block
            else:
                try:
                    values[p.name] = float(values[p.name])
                except (TypeError, ValueError) as exc:
                    raise OODLabError(
                        f"{self.name}: parameter {p.name} must be a number, got {values[p.name]!r}"
                    ) from exc
                if not p.low <= values[p.name] <= p.high:
                    raise OODLabError(
                        f"{self.name}: {p.name}={values[p.name]} is outside [{p.low}, {p.high}]"
                    )
        return values

    def score(self, features: FeatureSet, **params) -> np.ndarray:
        """Scores [N] of every sample in ``features`` (higher = more ID)."""
        return self.fn(features, **self.resolve(features.blocks, params))


ENERGY_PAPER = Paper(
    "Energy-based Out-of-distribution Detection",
    "NeurIPS 2020",
    "https://arxiv.org/abs/2010.03759",
)
TEMPERATURE = Param("T", 1.0, 0.1, 100.0, 0.1, "Temperature T of the energy score.")

METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "msp",
            "MSP",
            "output",
            "logits",
            r"S(x)=\max_k \operatorname{softmax}(z)_k",
            Paper(
                "A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks",
                "ICLR 2017",
                "https://arxiv.org/abs/1610.02136",
            ),
            lambda f: baselines.msp(f.logits),
        ),
        Method(
            "maxlogit",
            "MaxLogit",
            "output",
            "logits",
            r"S(x)=\max_k z_k",
            Paper(
                "Scaling Out-of-Distribution Detection for Real-World Settings",
                "ICML 2022",
                "https://arxiv.org/abs/1911.11132",
            ),
            lambda f: baselines.max_logit(f.logits),
        ),
        Method(
            "energy",
            "Energy",
            "output",
            "logits",
            r"S(x)=T\log\sum_k e^{z_k/T}",
            ENERGY_PAPER,
            lambda f, T: baselines.energy(f.logits, T),
            (TEMPERATURE,),
        ),
        Method(
            "nap",
            "NAP",
            "activation",
            "per-channel max and mean of a block",
            r"S_{NAP}(x)=\frac{1}{C}\sum_{c=1}^{C}\left(\frac{\max_c}{\operatorname{mean}_c+\epsilon}\right)^2",
            Paper(
                "Out-of-Distribution Detection using Neural Activation Prior",
                "arXiv 2024",
                "https://arxiv.org/abs/2402.18162",
            ),
            lambda f, block, eps: nap.nap(
                f.stat(block, "max"), f.stat(block, "mean"), eps
            ),
            (
                Param(
                    "block",
                    LAST_BLOCK,
                    kind="block",
                    help="Probed block whose post-ReLU map is scored (paper: the last one, before global pooling).",
                ),
                Param(
                    "eps",
                    1.0,
                    0.01,
                    10.0,
                    0.01,
                    "ε in the denominator, for numerical stability (paper: 1).",
                ),
            ),
        ),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UnknownNameError("method", name, list(METHODS))
    return METHODS[name]


def parse_method(spec: str) -> tuple[Method, dict[str, str]]:
    """``'nap:block=layer3.0,eps=0.5'`` → (the NAP method, {'block': 'layer3.0', 'eps': '0.5'})."""
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
