"""The method registry: it only collects the ``Method`` records each family module declares next to its math.

Pages, CLI flags, tables, tuning and the README's methods table are generated from ``METHODS``.
"""

from __future__ import annotations

from ..errors import OODLabError, UnknownNameError
from . import (
    block_norm,
    boundary,
    feature_space,
    heatmap,
    line,
    multi_block,
    nap,
    optfs,
    output,
    shaping,
    subspace,
)
from .method import Method

FAMILIES = (
    output,
    feature_space,
    boundary,
    subspace,
    shaping,
    optfs,
    nap,
    line,
    block_norm,
    multi_block,
    heatmap,
)
METHODS: dict[str, Method] = {m.name: m for family in FAMILIES for m in family.METHODS}


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
