"""Settings objects: dataclasses with defaults and validation, overridable from one TOML file.

Every job's settings derive from :class:`Settings`: declared bounds and choices (:func:`setting`) and
the field types are checked once after construction, so each settings class states only its fields and
any rule that spans fields (:meth:`Settings.check`). :func:`load_toml` reads a TOML file into a settings
class; an unknown key is an error naming the key and the file. The resolved settings are saved next to
every checkpoint, index and result.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The torch device a job asks for: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")

T = TypeVar("T")


def setting(default: Any = dataclasses.MISSING, *, gt: float | None = None, ge: float | None = None,
            lt: float | None = None, le: float | None = None) -> Any:
    """A settings field with its default and optional bounds (``gt`` / ``ge`` / ``lt`` / ``le``)."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default: use a tuple")
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """Base of the engine's settings dataclasses: checks types, bounds and :meth:`check` after ``__init__``.

    Subclasses are ``@dataclass(frozen=True)``; a bad value raises ``ValueError`` naming the class, field
    and value.
    """

    def __post_init__(self) -> None:
        problems = [*_field_problems(self), *self.check()]
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))

    def check(self) -> Iterable[str]:
        """Rules across fields; yield one message per broken rule."""
        return ()

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt,
                                                   "le": operator.le}
_SYMBOL = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _field_problems(obj: Any) -> list[str]:
    hints = _hints(type(obj))
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        hint = hints.get(f.name, Any)
        if not _fits(value, hint):
            out.append(f"{f.name} must be {_describe(hint)}, got {value!r}")
            continue
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            for key, holds in _BOUNDS.items():
                bound = f.metadata.get(key)
                if bound is not None and not holds(value, bound):
                    out.append(f"{f.name} must be {_SYMBOL[key]} {bound}, got {value!r}")
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has type ``hint`` (plain classes, unions, Literal, tuple[X, ...]; others pass)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if hint is float:  # numpy scalars count as numbers
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses; unknown keys raise
    ``ValueError`` naming the key and ``where`` (the file, and the section inside it)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(fields))}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints.get(name, fields[name].type)
        sub = hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None
        if sub is not None and isinstance(value, dict):
            kwargs[name] = from_mapping(sub, value, where=f"{where} [{name}]")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict (a syntax error is a ``ValueError`` naming the file)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None


def load_toml(cls: type[T], path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> T:
    """Read ``path`` (TOML) into ``cls``; ``overrides`` (e.g. command-line flags) win over the file."""
    data = read_toml(path)
    if overrides:
        data = {**data, **overrides}
    return from_mapping(cls, data, where=str(path))


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a settings dataclass."""
    return dataclasses.asdict(obj)
