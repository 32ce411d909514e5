"""Parsing of header values shared by the text readers: charge, ion mode, numbers, retention time."""

from __future__ import annotations

import re
from functools import lru_cache

from engine.core.validate import normalise_ion_mode

_CHARGE_RE = re.compile(r"^([+-]?)(\d+)([+-]?)$")
_CHARGE_LIST_RE = re.compile(r"^\d+[+-]?(?:\s*(?:,|and)\s*\d+[+-]?)+$")


@lru_cache(maxsize=256)
def parse_charge(text: str) -> int | None:
    """Read ``1``, ``1+``, ``+1``, ``2-``, ``-2`` (and ``0``) as a signed int.

    An empty value and a list of candidate charges (``2+ and 3+``, Mascot style) give None; any other
    text raises ``ValueError``.
    """
    value = text.strip()
    if not value or _CHARGE_LIST_RE.match(value):
        return None
    m = _CHARGE_RE.match(value)
    if m is None or (m.group(1) and m.group(3)):
        raise ValueError(f"cannot read charge {text!r} (expected e.g. 1, 1+, 2-, -1)")
    n = int(m.group(2))
    return -n if "-" in (m.group(1), m.group(3)) else n


@lru_cache(maxsize=256)
def parse_ion_mode(text: str) -> str | None:
    """``positive`` / ``negative`` for the usual spellings; unknown text is kept for validation to reject."""
    mode = normalise_ion_mode(text)
    return None if mode is None else str(mode).strip()


#: Placeholders that tools (GNPS: ``INCHI=N/A``) write for "no value" in structure and adduct fields.
NULL_TOKENS = frozenset({"", "n/a", "na", "none", "null", "nan"})


def optional_text(value: str | None) -> str | None:
    """None for a missing value or a placeholder such as ``N/A``; the text otherwise."""
    if value is None or value.strip().lower() in NULL_TOKENS:
        return None
    return value


def parse_float(text: str) -> float | None:
    """A float, or None for an empty value; raises ``ValueError`` on other text."""
    value = text.strip()
    return float(value) if value else None


def parse_int(text: str) -> int | None:
    """An int (``"2"``, ``"2.0"``), or None for an empty value; raises ``ValueError`` on other text."""
    value = text.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        number = float(value)
        if not number.is_integer():
            raise
        return int(number)


def header_charge(text: str | None, key: str, meta: dict[str, str]) -> int | None:
    """The charge of a charge header value (None when absent); a value that names no charge is kept in
    ``meta`` under its header ``key``; an unreadable one raises ``ValueError``."""
    if not text:
        return None
    charge = parse_charge(text)
    if charge is None:
        meta[key] = text
    return charge


def header_retention_time(text: str | None, key: str, meta: dict[str, str], *, minutes: bool) -> float | None:
    """Seconds from a retention-time header value (``minutes``: the header gives minutes); a value that is
    not a number is kept in ``meta`` under its header ``key``."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        meta[key] = text
        return None
    return value * 60.0 if minutes else value
