"""What a detector is: a record of data (parameters, formula, paper, arrays it reads) plus pure functions.

A ``Method`` scores one feature set: ``score_fn(features, state, **params) -> scores [N]`` (higher = more ID, always).
``features`` is any mapping from cache array names (``"logits"``, ``"penultimate"``, ``"blocks/layer4.0/max"``, …) to
arrays; ``state`` is what the method's optional ``Fit`` learned from the ID training set (a small dataclass of arrays)
and is ``None`` for methods without one. A ``Prepare`` step derives parameter-free arrays per scored set once (e.g.
KNN's neighbour distances) so that moving a slider only reruns the cheap part. Composite methods (NAP-X) declare
``parts`` and combine their parts' scores, so moving λ recombines two cached score vectors.

Nothing here reads files, runs a model or knows about the cache: the workspace layer supplies the arrays and keeps
the fitted states (``ood_core.workspace``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import OODLabError, UnknownNameError

LAST_BLOCK = "last"
SELECTED_BLOCK = (
    "selected"  # the NormRatio choice, resolved by the workspace (needs the jigsaw set)
)
ALL_BLOCKS = "all"
BLOCK_SEPARATOR = "+"  # a block set is written "layer3.0+layer4.0" (a comma separates parameters in a spec)
BENCHMARKS = ("cifar10", "cifar100", "imagenet")


class Arrays(Protocol):
    """Read access to one feature set's arrays by cache name (a ``FeatureSet`` or a plain dict)."""

    def __getitem__(self, name: str) -> np.ndarray: ...

    def __contains__(self, name: object) -> bool: ...


class TrainData(Arrays, Protocol):
    """The ID training set as a fit sees it: its arrays, its probed blocks, its images, and other cached sets of the
    same model."""

    @property
    def blocks(self) -> list[str]: ...

    def pixels(self, rows: np.ndarray) -> np.ndarray:
        """Images of ``rows`` as the model sees them, normalisation undone: [n, C, H, W] in [0, 1]."""

    def other(self, dataset: str) -> TrainData:
        """Another cached set of the same model (e.g. an outlier-exposure set), by dataset reference."""


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    url: str


def arxiv(title: str, venue: str, number: str) -> Paper:
    return Paper(title, venue, f"https://arxiv.org/abs/{number}")


@dataclass(frozen=True)
class Param:
    """A hyperparameter.

    ``kind``: ``float``/``int`` (a slider from ``low`` to ``high`` by ``step``), ``block`` (a probed block; ``last``
    or ``selected`` as defaults), ``blocks`` (a set of probed blocks, ``all`` or joined by ``+``) or ``choice`` (one of ``choices``, e.g. a dataset reference). ``paper`` holds the
    paper's default per benchmark (``cifar10``, ``cifar100``, ``imagenet``) where the paper gives one; ``default``
    is OOD Lab's default on the demo.
    """

    name: str
    default: float | int | str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    help: str = ""
    kind: str = "float"
    paper: Mapping[str, float | int | str] = field(default_factory=dict)
    choices: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind in ("float", "int")

    def default_for(self, benchmark: str | None = None) -> float | int | str:
        """The paper's default on ``benchmark`` when it gives one, else OOD Lab's default."""
        return self.paper.get(benchmark, self.default) if benchmark else self.default

    def check(self, method: str, value: object) -> float | int | str:
        """``value`` coerced to this parameter's type; one-line error if it is not a finite number in range."""
        if not self.numeric:
            if self.kind == "choice" and self.choices and value not in self.choices:
                raise OODLabError(
                    f"{method}: {self.name} must be one of {', '.join(self.choices)}, not {value!r}"
                )
            return str(value)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise OODLabError(
                f"{method}: parameter {self.name} must be a number, got {value!r}"
            ) from exc
        if not math.isfinite(number):
            raise OODLabError(
                f"{method}: parameter {self.name} must be finite, got {value!r}"
            )
        if self.kind == "int" and number != int(number):
            raise OODLabError(
                f"{method}: parameter {self.name} must be an integer, got {value!r}"
            )
        if not self.low <= number <= self.high:
            raise OODLabError(
                f"{method}: {self.name}={number:g} is outside [{self.low:g}, {self.high:g}]"
            )
        return int(number) if self.kind == "int" else number

    def grid(self, points: int = 11) -> list[float | int]:
        """``points`` evenly spaced values over the range, snapped to ``step`` (ints deduplicated)."""
        values = np.linspace(self.low, self.high, points)
        if self.step:
            values = self.low + np.round((values - self.low) / self.step) * self.step
        values = np.clip(values, self.low, self.high)
        if self.kind == "int":
            return sorted({round(float(v)) for v in values})
        return sorted({round(float(v), 10) for v in values})


@dataclass(frozen=True)
class Fit:
    """How a method learns from the ID training set: ``fn(train: TrainData, **params) -> state``.

    Methods that need the same statistics share one ``Fit`` (it is memoised and cached per ``name``, ``version``,
    the train entry and the values of ``params``, the method parameters that change the fit). ``store`` persists the
    state in the feature cache as a derived entry; states as large as the train set itself are recomputed instead.
    """

    name: str
    fn: Callable[..., Any]
    needs: tuple[str, ...]
    state: type
    params: tuple[str, ...] = ()
    version: int = 1
    store: bool = True


@dataclass(frozen=True)
class Prepare:
    """Arrays derived per scored set: ``fn(features, state, **params) -> {name: array}``, recomputed only when the
    set, the state or one of ``params`` (a subset of the method's parameters, usually none) changes.

    They are laid over the arrays the method's score function sees (a method may chain several, each seeing the
    previous ones); ``store`` keeps them in the feature cache. A step that does not read the state
    (``reads_state=False``) gets ``None`` for it and is shared by every method that uses it, whatever their fits.
    """

    name: str
    fn: Callable[..., dict[str, np.ndarray]]
    needs: tuple[str, ...]
    version: int = 1
    store: bool = False
    params: tuple[str, ...] = ()
    reads_state: bool = True


def stored_scores(
    name: str,
    fn: Callable[..., np.ndarray],
    needs: tuple[str, ...] = ("penultimate",),
) -> dict:
    """A parameter-free method's scores as its per-set array, computed once and kept in the cache:
    ``fn(features, state) -> scores``; returns the ``Method`` fields ``prepare`` and ``score_fn`` that do it."""
    array = f"{name}/scores"
    step = Prepare(
        name=f"{name}-scores",
        fn=lambda features, state: {array: fn(features, state)},
        needs=needs,
        store=True,
    )
    return {
        "prepare": step,
        "score_fn": lambda features, state: np.asarray(features[array]),
    }


@dataclass(frozen=True)
class Method:
    """One detector: its record (names, formula, paper, parameters, arrays) and its pure functions.

    ``needs`` names the cache arrays of a scored set that ``score_fn`` reads; ``{block}`` is filled in from the
    method's block parameter. ``cost`` says what scoring needs beyond the cache: ``"cache"`` (nothing),
    ``"reinference"`` (runs the model again, e.g. ODIN: the workspace computes the array it ``needs``) or
    ``"training"`` (a fit that trains a network: run only when asked for).
    """

    name: str
    label: str
    family: str
    needs: tuple[str, ...]
    formula: str
    paper: Paper
    score_fn: Callable[..., np.ndarray] = field(repr=False)
    params: tuple[Param, ...] = ()
    fit: Fit | None = None
    prepare: Prepare | tuple[Prepare, ...] | None = None
    parts: tuple[tuple[Method, tuple[str, ...]], ...] = ()
    cost: str = "cache"
    sign: str = "higher = more ID"

    @property
    def prepares(self) -> tuple[Prepare, ...]:
        """The per-set preparation steps, in order."""
        if self.prepare is None:
            return ()
        return self.prepare if isinstance(self.prepare, tuple) else (self.prepare,)

    @property
    def composite(self) -> bool:
        return bool(self.parts)

    @property
    def block_params(self) -> list[str]:
        return [p.name for p in self.params if p.kind == "block"]

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def defaults(self, benchmark: str | None = None) -> dict[str, float | int | str]:
        return {p.name: p.default_for(benchmark) for p in self.params}

    def arrays(self, params: Mapping[str, object]) -> tuple[str, ...]:
        """The cache arrays a scored set must hold for ``params`` (block placeholders filled in)."""
        return tuple(need.format(**params) for need in self.needs)

    def resolve(
        self, blocks: Sequence[str], params: Mapping[str, object] | None = None
    ) -> dict[str, float | int | str]:
        """Defaults overridden by ``params``, each checked (finite, integer, in range, a probed block)."""
        values = {**self.defaults(), **(params or {})}
        unknown = set(values) - {p.name for p in self.params}
        if unknown:
            raise OODLabError(
                f"method '{self.name}' has no parameter {', '.join(sorted(unknown))}; "
                f"it takes: {', '.join(p.name for p in self.params) or 'none'}"
            )
        resolved = {}
        for p in self.params:
            if p.kind == "block":
                resolved[p.name] = _block(self.name, values[p.name], blocks)
            elif p.kind == "blocks":
                resolved[p.name] = BLOCK_SEPARATOR.join(
                    block_set(self.name, values[p.name], blocks)
                )
            else:
                resolved[p.name] = p.check(self.name, values[p.name])
        return resolved

    def validate(
        self, blocks: Sequence[str], params: Mapping[str, object] | None = None
    ) -> None:
        """Check ``params`` before any work; ``block="selected"`` is accepted (the workspace resolves it)."""
        values = {**self.defaults(), **(params or {})}
        self.resolve(
            blocks,
            {k: blocks[-1] if v == SELECTED_BLOCK else v for k, v in values.items()},
        )

    def fit_state(self, train: TrainData, **params) -> Any:
        """The fitted state from ID train arrays (``None`` without a fit; a tuple of part states if composite)."""
        if self.composite:
            return tuple(
                part.fit_state(train, **_subset(params, names))
                for part, names in self.parts
            )
        if self.fit is None:
            return None
        return self.fit.fn(
            train, **{k: params[k] for k in self.fit.params if k in params}
        )

    def score(
        self,
        features: Arrays,
        state: Any = None,
        blocks: Sequence[str] | None = None,
        **params,
    ) -> np.ndarray:
        """Scores [N] of every row of ``features`` (higher = more ID), parameters checked first.

        ``blocks`` defaults to ``features.blocks`` (a ``FeatureSet``). A method with a fit needs its ``state``.
        """
        resolved = self.resolve(
            blocks if blocks is not None else features.blocks, params
        )
        if self.composite:
            if state is None:
                state = (None,) * len(self.parts)
            part_scores = [
                part.score(features, part_state, blocks, **_subset(resolved, names))
                for (part, names), part_state in zip(self.parts, state)
            ]
            return self.score_fn(*part_scores, **_own(self, resolved))
        if self.fit is not None and state is None:
            raise OODLabError(
                f"{self.label} needs statistics of the ID train features; extract the ID train split"
            )
        for step in self.prepares:
            features = Overlay(
                features,
                step.fn(
                    features,
                    state if step.reads_state else None,
                    **{k: resolved[k] for k in step.params},
                ),
            )
        return self.score_fn(features, state, **resolved)


class Overlay(Mapping):
    """A feature set's arrays with extra ones (prepared or re-inferred) laid over them, read by name."""

    def __init__(self, features: Arrays, extra: Mapping[str, np.ndarray]):
        self.features, self.extra = features, extra

    def __getitem__(self, name: str) -> np.ndarray:
        return self.extra[name] if name in self.extra else self.features[name]

    def __contains__(self, name: object) -> bool:
        return name in self.extra or name in self.features

    def __iter__(self):
        return iter(self.extra)

    def __len__(self) -> int:
        return len(self.extra)


def _subset(params: Mapping[str, object], names: Sequence[str]) -> dict[str, object]:
    return {k: params[k] for k in names if k in params}


def _own(method: Method, params: Mapping[str, object]) -> dict[str, object]:
    """A composite's parameters that no part takes (e.g. NAP-X's λ)."""
    taken = {name for _, names in method.parts for name in names}
    return {k: v for k, v in params.items() if k not in taken}


def part_params(
    method: Method, params: Mapping[str, object]
) -> list[dict[str, object]]:
    """Each part's parameters of a composite method."""
    return [_subset(params, names) for _, names in method.parts]


def own_params(method: Method, params: Mapping[str, object]) -> dict[str, object]:
    return _own(method, params)


def block_set(method: str, value: object, blocks: Sequence[str]) -> list[str]:
    """The blocks of a block-set value (``all``, or names joined by ``+``; ``last`` allowed), in probe order."""
    if value == ALL_BLOCKS:
        return list(blocks)
    names = {
        _block(method, name.strip(), blocks)
        for name in str(value).split(BLOCK_SEPARATOR)
        if name.strip()
    }
    if not names:
        raise OODLabError(f"{method}: choose at least one block")
    return [b for b in blocks if b in names]


def _block(method: str, value: object, blocks: Sequence[str]) -> str:
    if value == SELECTED_BLOCK:
        raise OODLabError(
            f"{method}: block '{SELECTED_BLOCK}' is the NormRatio choice, resolved from the ID train and jigsaw "
            "features: score through the workspace, or name a block"
        )
    block = blocks[-1] if value == LAST_BLOCK else str(value)
    if block not in blocks:
        raise UnknownNameError("block", block, list(blocks))
    return block
