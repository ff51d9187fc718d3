"""OOD scores: pure functions of cached arrays, registered in ``ood_core.scores.registry.METHODS``."""

from .registry import METHODS, Method, Param, get_method, parse_method

__all__ = ["METHODS", "Method", "Param", "get_method", "parse_method"]
