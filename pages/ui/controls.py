"""Controls: one widget per method parameter (generated from its ``Param`` record) and the page's own kept widgets.

Every kept widget is drawn through these helpers, so that a deep link can set it (``links.take``) and a kept value
it cannot show is dropped first (``state.drop_unfit``): a value reaches a widget only after the check its own
record implies (a slider's range and step, a select box's options, a block of this model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

from ood_core.errors import OODLabError
from ood_core.scores.method import BLOCK_SEPARATOR, Method, Param, block_set

from . import links
from .state import drop_unfit

OPACITY = Param(
    "opacity", 0.6, 0.0, 1.0, 0.05, "How strongly the overlay covers the image."
)


def _in_range(param: Param, value: object) -> bool:
    """Whether ``value`` is a number of the slider's type inside ``param``'s range."""
    number_type = int if param.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, number_type):
        return False
    try:
        param.check(param.name, value)
    except OODLabError:
        return False
    return True


def slider(label: str, param: Param, key: str, where=st, **kwargs) -> float | int:
    """A slider over ``param``'s range (its default preset) in ``where`` (a column, a container); kept values and
    link values are checked against it."""
    cast = int if param.kind == "int" else float
    links.take(key, lambda text: param.check(label, links.number(text)))
    drop_unfit(key, lambda value: _in_range(param, value))
    return where.slider(
        label,
        cast(param.low),
        cast(param.high),
        cast(param.default),
        cast(param.step) if param.step else None,
        key=key,
        help=kwargs.pop("help", param.help or None),
        **kwargs,
    )


def selectbox(
    label: str, options: Sequence, key: str, index: int = 0, where=st, **kwargs
):
    """A select box whose kept or linked value must be one of ``options``."""
    options = list(options)
    links.take(key, lambda text: links.one_of(options, text))
    drop_unfit(key, lambda value: value in options)
    return where.selectbox(label, options, index=index, key=key, **kwargs)


def radio(label: str, options: Sequence, key: str, index: int = 0, where=st, **kwargs):
    """Radio buttons whose kept or linked value must be one of ``options``."""
    options = list(options)
    links.take(key, lambda text: links.one_of(options, text))
    drop_unfit(key, lambda value: value in options)
    return where.radio(label, options, index=index, key=key, **kwargs)


def multiselect(
    label: str, options: Sequence, key: str, default=None, where=st, **kwargs
):
    """A multiselect whose kept or linked values must all be among ``options`` (a link separates them by ``|``)."""
    options = list(options)
    links.take(key, lambda text: links.some_of(options, text))
    drop_unfit(
        key,
        lambda value: isinstance(value, list) and all(v in options for v in value),
    )
    return where.multiselect(label, options, default=default, key=key, **kwargs)


def segmented(label: str, options: Sequence, key: str, default=None, **kwargs):
    """A segmented control whose kept or linked value must be one of ``options``."""
    options = list(options)
    links.take(key, lambda text: links.one_of(options, text))
    drop_unfit(key, lambda value: value is None or value in options)
    return st.segmented_control(label, options, default=default, key=key, **kwargs)


def toggle(label: str, key: str, value: bool = False, **kwargs) -> bool:
    """A toggle; a link sets it with ``1``/``0`` (or ``true``/``false``)."""
    links.take(key, links.flag)
    drop_unfit(key, lambda kept_value: isinstance(kept_value, bool))
    return st.toggle(label, value=value, key=key, **kwargs)


def number_input(label: str, param: Param, key: str, where=st, **kwargs):
    """A whole-number input over ``param``'s range; kept and linked values are checked against it."""
    links.take(key, lambda text: param.check(label, links.number(text)))
    drop_unfit(key, lambda value: _in_range(param, value))
    return where.number_input(
        label, int(param.low), int(param.high), int(param.default), key=key, **kwargs
    )


# --- method parameters ----------------------------------------------------------------------------------------------


def _shown_params(
    method: Method, skip: tuple[str, ...], only: tuple[str, ...] | None
) -> list[Param]:
    """The parameters that get a widget: numbers, a block, a block set (minus ``skip``, within ``only``)."""
    return [
        p
        for p in method.params
        if p.name not in skip
        and (only is None or p.name in only)
        and (p.numeric or p.kind in ("block", "blocks"))
    ]


def widget_default(
    p: Param, method: Method, blocks: list[str], benchmark: str | None
) -> object:
    """A parameter widget's initial value: the paper's for ``benchmark`` (OOD Lab's on the demo); a block default
    the widget cannot name (``last``, ``selected``: the NormRatio choice) shows as the last block."""
    default = p.default_for(benchmark)
    if p.kind == "block" and default not in blocks:
        return blocks[-1]
    return widget_value(p, method, default, blocks)


def widget_value(p: Param, method: Method, value: object, blocks: list[str]) -> object:
    """What the widget of ``p`` shows for a method value ``value`` (the inverse of ``method_value``): a block set
    becomes a list of blocks, a number its slider's type. Raises ``OODLabError`` for a value the widget cannot
    show (outside the range, not a block of this model)."""
    if p.kind == "block":
        block = blocks[-1] if value == "last" else value
        if block not in blocks:
            raise OODLabError(f"{method.label}: '{value}' is not a probed block here")
        return block
    if p.kind == "blocks":
        return block_set(method.name, value, blocks)
    checked = p.check(method.label, value)
    return (int if p.kind == "int" else float)(checked)


def method_value(p: Param, widget_value_: object, blocks: list[str]) -> object:
    """What a method receives from its widget's value (a block set is joined; an empty one is the last block)."""
    if p.kind == "blocks":
        return BLOCK_SEPARATOR.join(widget_value_ or blocks[-1:])
    return widget_value_


def _fits(p: Param, value: object, blocks: list[str]) -> bool:
    """Whether the widget of ``p`` can show ``value``."""
    if p.kind == "blocks":
        return isinstance(value, list) and all(v in blocks for v in value)
    if p.kind == "block":
        return value in blocks
    return _in_range(p, value)


def link_parser(p: Param, method: Method, blocks: list[str]):
    """How a deep link's text becomes the value of the widget of ``p`` (checked like the widget itself)."""
    if p.kind == "blocks":
        return lambda text: links.some_of(blocks, text)
    if p.kind == "block":
        return lambda text: links.one_of(blocks, text)
    return lambda text: widget_value(p, method, links.number(text), blocks)


def _prepared(key: str, p: Param, method: Method, blocks: list[str]) -> None:
    """Apply a link's value to ``key`` and drop a kept value its widget cannot show."""
    links.take(key, link_parser(p, method, blocks))
    drop_unfit(key, lambda value: _fits(p, value, blocks))


# Parameters are named in code as in ASCII; their controls show the papers' symbols.
SYMBOLS = {"lambda": "λ", "eps": "ε", "tau": "τ", "alpha": "α", "gamma": "γ"}


def param_controls(
    method: Method,
    blocks: list[str],
    key: str,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    benchmark: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    """One widget per parameter of ``method``, generated from its ``Param`` records (sliders for numbers, a select
    box for the block, a multiselect for a block set); defaults are the papers' for ``benchmark``."""
    values = {}
    for p in _shown_params(method, skip, only):
        widget_key = f"{key}:{method.name}:{p.name}"
        label = (labels or {}).get(p.name) or SYMBOLS.get(p.name, p.name)
        default = widget_default(p, method, blocks, benchmark)
        _prepared(widget_key, p, method, blocks)
        if p.kind == "block":
            chosen = st.selectbox(
                label, blocks, index=blocks.index(default), key=widget_key, help=p.help
            )
        elif p.kind == "blocks":
            chosen = st.multiselect(
                label, blocks, default=default, key=widget_key, help=p.help
            )
        else:
            cast = int if p.kind == "int" else float
            chosen = st.slider(
                label,
                cast(p.low),
                cast(p.high),
                default,
                cast(p.step),
                key=widget_key,
                help=p.help,
            )
        values[p.name] = method_value(p, chosen, blocks)
    return values


def param_values(
    method: Method,
    blocks: list[str],
    key: str,
    benchmark: str | None = None,
    state: Mapping | None = None,
) -> dict:
    """The values ``param_controls`` would return, read from the widgets' kept ``state`` (the session's by default;
    a widget without one, or with one it could not show, gives its default) without drawing them."""
    if state is None:
        for p in _shown_params(method, (), None):
            _prepared(f"{key}:{method.name}:{p.name}", p, method, blocks)
        state = st.session_state
    values = {}
    for p in _shown_params(method, (), None):
        kept_value = state.get(f"{key}:{method.name}:{p.name}")
        if kept_value is None or not _fits(p, kept_value, blocks):
            kept_value = widget_default(p, method, blocks, benchmark)
        values[p.name] = method_value(p, kept_value, blocks)
    return values


def param_defaults(
    method: Method, blocks: list[str], benchmark: str | None = None
) -> dict:
    """The values ``param_controls`` starts from (the papers' for ``benchmark``)."""
    return param_values(method, blocks, "", benchmark, state={})


def hand_over(
    values: Mapping[str, Mapping[str, object]],
    methods: Mapping[str, Method],
    blocks: list[str],
    key: str,
) -> list[str]:
    """Put ``{method: {param: value}}`` (e.g. tuned values) into the kept state of the widgets under ``key``,
    each converted to what its widget shows; returns one line per value that was refused (and not set)."""
    refused = []
    for name, chosen in values.items():
        method = methods.get(name)
        if method is None:
            refused.append(f"{name}: not a method here")
            continue
        for param_name, value in chosen.items():
            try:
                p = method.param(param_name)
                shown = widget_value(p, method, value, blocks)
            except (OODLabError, StopIteration):
                refused.append(
                    f"{method.label} {param_name}={value!r}: not a value its control can take"
                )
                continue
            st.session_state[f"{key}:{name}:{param_name}"] = shown
    return refused
