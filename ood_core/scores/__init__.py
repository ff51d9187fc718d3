"""OOD scores: ``Method`` records with pure functions of cached arrays, one module per family."""

from .method import Method, Param
from .registry import METHODS, get_method, parse_method

__all__ = ["METHODS", "Method", "Param", "get_method", "parse_method"]
