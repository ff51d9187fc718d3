"""OOD Lab core: extraction engine, feature cache, scores and metrics for activation-based OOD detection."""

__version__ = "0.1.0"
