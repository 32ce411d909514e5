"""Adduct notation: parse ``[M+H]+``, ``[M-H2O+H]+``, ``[2M+Na]+``, ``[M+2H]2+`` and friends.

An adduct relates a neutral monoisotopic mass ``M`` to the precursor m/z:
``mz = (n_molecules * M + delta_mass) / |charge|``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from engine.core.errors import InvalidRecordError

ELECTRON_MASS = 0.000548579909
ELEMENT_MASS: dict[str, float] = {
    "H": 1.00782503223, "C": 12.0, "N": 14.00307400443, "O": 15.99491461957, "P": 30.97376199842,
    "S": 31.9720711744, "F": 18.99840316273, "Cl": 34.968852682, "Br": 78.9183376, "I": 126.9044719,
    "Na": 22.989769282, "K": 38.9637064864, "Li": 7.0160034366, "Ca": 39.962590863, "Fe": 55.93493633,
    "Mg": 23.985041697, "Zn": 63.92914201, "Cu": 62.92959772, "Ag": 106.9050916, "Si": 27.97692653465,
    "B": 11.00930536, "Se": 79.9165218, "Cs": 132.905451961, "Rb": 84.9117897379,
}
# Common abbreviations used inside adduct strings.
GROUPS: dict[str, str] = {
    "ACN": "C2H3N", "FA": "CH2O2", "HAc": "C2H4O2", "Hac": "C2H4O2", "AcOH": "C2H4O2", "TFA": "C2HF3O2",
    "MeOH": "CH4O", "DMSO": "C2H6OS", "IsoProp": "C3H8O", "NH4": "NH4", "HCOO": "CHO2", "CH3COO": "C2H3O2",
    "OAc": "C2H3O2",
}
_ADDUCT_RE = re.compile(r"^\[?(\d*)M((?:[+-][0-9]*[A-Za-z][A-Za-z0-9]*)*)\]?(\d*)([+-]{1,3})?\*?$")
_TERM_RE = re.compile(r"([+-])(\d*)([A-Za-z][A-Za-z0-9]*)")
_FORMULA_RE = re.compile(r"([A-Z][a-z]?)(\d*)")


def formula_mass(formula: str) -> float:
    """Monoisotopic mass of a simple formula such as ``C2H3N`` (no brackets)."""
    if formula in GROUPS:
        formula = GROUPS[formula]
    pos = 0
    total = 0.0
    for m in _FORMULA_RE.finditer(formula):
        if m.start() != pos:
            raise ValueError(f"cannot read formula {formula!r}")
        element, count = m.group(1), m.group(2)
        if element not in ELEMENT_MASS:
            raise ValueError(f"unknown element {element!r} in {formula!r}")
        total += ELEMENT_MASS[element] * (int(count) if count else 1)
        pos = m.end()
    if pos != len(formula) or not formula:
        raise ValueError(f"cannot read formula {formula!r}")
    return total


@dataclass(frozen=True, slots=True)
class Adduct:
    """A parsed adduct: ``mz = (n_molecules * M + delta_mass) / |charge|``."""

    name: str
    n_molecules: int
    delta_mass: float
    charge: int

    def mz_from_neutral(self, neutral_mass: float) -> float:
        return (self.n_molecules * neutral_mass + self.delta_mass) / abs(self.charge)

    def neutral_from_mz(self, mz: float) -> float:
        return (mz * abs(self.charge) - self.delta_mass) / self.n_molecules


@lru_cache(maxsize=4096)
def parse_adduct(text: str) -> Adduct:
    """Parse an adduct string; raise ``ValueError`` with the text when it is not understood."""
    raw = text.strip().replace(" ", "")
    m = _ADDUCT_RE.match(raw)
    if m is None or raw.startswith("[") != ("]" in raw):
        raise ValueError(f"unknown adduct {text!r}")
    n_mol = int(m.group(1)) if m.group(1) else 1
    terms, charge_digits, signs = m.group(2), m.group(3), m.group(4)
    delta = 0.0
    pos = 0
    for t in _TERM_RE.finditer(terms):
        if t.start() != pos:
            raise ValueError(f"unknown adduct {text!r}")
        sign = 1.0 if t.group(1) == "+" else -1.0
        mult = int(t.group(2)) if t.group(2) else 1
        try:
            delta += sign * mult * formula_mass(t.group(3))
        except ValueError as exc:
            raise ValueError(f"unknown adduct {text!r}: {exc}") from None
        pos = t.end()
    if pos != len(terms):
        raise ValueError(f"unknown adduct {text!r}")
    if not signs:
        # "[M+H]" without a charge sign: infer from the terms (cation or anion loss).
        signs = "-" if terms.startswith("-H") and terms.count("+") == 0 else "+"
    sign = 1 if signs[0] == "+" else -1
    magnitude = int(charge_digits) if charge_digits else len(signs)
    charge = sign * magnitude
    delta -= charge * ELECTRON_MASS
    return Adduct(name=text, n_molecules=n_mol, delta_mass=delta, charge=charge)


def check_adduct(text: str, *, path: str, record: str) -> Adduct:
    """Parse an adduct or raise :class:`InvalidRecordError` naming the file and record."""
    try:
        return parse_adduct(text)
    except ValueError as exc:
        raise InvalidRecordError(str(exc), path=path, record=record, reason="unknown_adduct") from None


def default_adduct(ion_mode: str) -> Adduct:
    """``[M+H]+`` for positive, ``[M-H]-`` for negative mode."""
    return parse_adduct("[M+H]+" if ion_mode == "positive" else "[M-H]-")
