"""Settings objects: dataclasses with defaults and validation, overridable from one TOML file.

Unknown keys are an error. The resolved settings are saved next to every checkpoint, index and result.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


def from_mapping(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses; unknown keys raise."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = fields[name].type
        sub = _dataclass_type(cls, name, ftype)
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_mapping(sub, value, where=f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _dataclass_type(cls: type, name: str, ftype: Any) -> type | None:
    import typing

    hints = typing.get_type_hints(cls)
    hint = hints.get(name, ftype)
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def load_toml(cls: type[T], path: str | Path) -> T:
    """Read ``path`` (TOML) into ``cls``."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return from_mapping(cls, data, where=str(path))


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a settings dataclass."""
    return dataclasses.asdict(obj)
