"""Errors that carry a one-line, actionable message for the CLI and the app."""


class OODLabError(Exception):
    """Base class: the message is shown to the user as is (no traceback)."""


class UnknownNameError(OODLabError):
    """A model, dataset, method or block name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        choices = ", ".join(sorted(known)) or "(none registered)"
        super().__init__(f"unknown {kind} '{name}'; choose one of: {choices}")


class DataPathError(OODLabError):
    """A dataset or weights path that is missing, unreadable or outside the data root."""


class CheckpointError(OODLabError):
    """A checkpoint that cannot be loaded into the requested architecture."""


class CacheError(OODLabError):
    """The feature cache cannot be written or read."""
