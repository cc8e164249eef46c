"""Typed configs read from YAML: strict pydantic models and one-line errors that name the key.

Scenarios, episode configs, batch specs and training configs all go through `validate`, so an
unknown key or a bad value reads the same everywhere: the source, the dotted key, what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import DrivesimError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A config section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The top-level mapping of a YAML file; a missing file, bad syntax or a non-mapping is one line."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DrivesimError(f"{what} {path}: cannot read it ({e.strerror}); check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise DrivesimError(f"{what} {path}:{where} is not valid YAML; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DrivesimError(f"{what} {path}: expected a mapping of keys at the top level")
    return data


def validate(cls: type[M], data: dict, source: str) -> M:
    """`cls.model_validate(data)`, with the first error as one line naming `source` and the key."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise DrivesimError(f"{source}: {describe(e, cls)}") from None


def describe(e: ValidationError, cls: type[BaseModel] | None = None) -> str:
    """The first error of `e` as 'unknown key ...' or 'key: message', with a count of the rest."""
    errors = e.errors()
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union")))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        text = f"unknown key '{loc}'"
        valid = _fields_at(cls, err["loc"][:-1]) if cls is not None else None
        if valid:
            text += f"; valid keys: {', '.join(valid)}"
    elif loc:
        text = f"{loc}: {msg}"
    else:
        text = msg
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return text + more


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names of the (nested) model at `loc`, when it is a plain path of model fields."""
    model = cls
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return list(model.model_fields)
