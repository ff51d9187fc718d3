"""Files and values users hand to OOD Lab, checked at the edge: a pydantic model per format, read with a size cap,
and every bad value reported as one line that names its field (never a traceback, never half-used)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import OODLabError

MAX_FILE_BYTES = 16 * 2**20
Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """A checked record: unknown keys refused, values not coerced from other types (``"abc"`` is no number),
    immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def one_line(exc: ValidationError) -> str:
    """The first problem of a validation error as ``field.path: what is wrong`` (and how many more there are)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return f"{where}: {first['msg']}" + (more if len(errors) > 1 else "")


def checked(model: type[Model], values: object, what: str) -> Model:
    """``values`` (a mapping) as ``model``, or ``OODLabError`` naming the first bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise OODLabError(f"{what}: {one_line(exc)}") from None


def read_json(model: type[Model], path: Path, what: str) -> Model:
    """The JSON file ``path`` read as ``model`` (at most ``MAX_FILE_BYTES``), or one ``OODLabError`` line."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise OODLabError(
                f"{path} is {size / 2**20:.1f} MiB; a {what} is at most {MAX_FILE_BYTES // 2**20} MiB"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise OODLabError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise OODLabError(f"{path} is not a valid {what}: {one_line(exc)}") from None
