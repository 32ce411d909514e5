"""matchms ``Spectrum`` in and out, for notebooks that already hold matchms spectra (the ``matchms`` extra:
``pip install "ms-annotation-engine[matchms]"``). matchms is imported only when a function here runs.

``from_matchms`` reads the peaks and the harmonised metadata keys (``precursor_mz``, ``charge``,
``ionmode``, ``adduct``, ``compound_name``, ``smiles``, ``inchi``, ``inchikey``, ``formula``,
``retention_time``, ``scans``); the identifier is the ``spectrum_id`` key, else ``title``, else the
spectrum's position. Other metadata are kept as text in :attr:`Spectrum.metadata`. ``to_matchms`` writes the
same keys back, so a round trip keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.core.records import ION_MODES, IonMode, Spectrum

#: engine field -> matchms metadata key (matchms' harmonised names).
_KEYS = {"precursor_mz": "precursor_mz", "charge": "charge", "ion_mode": "ionmode", "adduct": "adduct",
         "name": "compound_name", "smiles": "smiles", "inchi": "inchi", "inchikey": "inchikey",
         "formula": "formula", "retention_time": "retention_time", "scan": "scans"}
_ID_KEYS = ("spectrum_id", "title")


def _number(value: Any, kind: type) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def from_matchms(spectrum: Any, *, index: int = 0, source_file: str = "") -> Spectrum:
    """An engine :class:`Spectrum` from a ``matchms.Spectrum`` (the ``index``-th of ``source_file``)."""
    meta = dict(spectrum.metadata)
    ident = next((str(meta[k]) for k in _ID_KEYS if meta.get(k) not in (None, "")), f"spectrum-{index}")
    mode = str(meta.get("ionmode") or "").lower()
    ion_mode: IonMode | None = mode if mode in ION_MODES else None

    def text(key: str) -> str | None:
        value = meta.get(key)
        return None if value in (None, "") else str(value)

    used = set(_KEYS.values()) | set(_ID_KEYS)
    return Spectrum(
        spectrum_id=ident, mz=np.asarray(spectrum.peaks.mz, dtype=np.float64),
        intensity=np.asarray(spectrum.peaks.intensities, dtype=np.float32),
        precursor_mz=_number(meta.get("precursor_mz"), float), charge=_number(meta.get("charge"), int),
        ion_mode=ion_mode, source_file=source_file, scan=_number(meta.get("scans"), int),
        retention_time=_number(meta.get("retention_time"), float), adduct=text("adduct"),
        name=text("compound_name"), smiles=text("smiles"), inchi=text("inchi"), inchikey=text("inchikey"),
        formula=text("formula"),
        metadata={str(k): str(v) for k, v in meta.items() if k not in used and v is not None})


def from_matchms_many(spectra: Iterable[Any], *, source_file: str = "") -> list[Spectrum]:
    """:func:`from_matchms` for each spectrum (``None`` entries, as matchms filters leave them, skipped)."""
    return [from_matchms(s, index=i, source_file=source_file) for i, s in enumerate(spectra) if s is not None]


def to_matchms(spectrum: Spectrum) -> Any:
    """A ``matchms.Spectrum`` with the peaks and metadata of ``spectrum`` (its id as ``spectrum_id``)."""
    from matchms import Spectrum as MatchmsSpectrum

    meta: dict[str, Any] = dict(spectrum.metadata)
    meta["spectrum_id"] = spectrum.spectrum_id
    for field, key in _KEYS.items():
        value = getattr(spectrum, field)
        if value is not None:
            meta[key] = value
    return MatchmsSpectrum(mz=np.asarray(spectrum.mz, dtype=float), intensities=np.asarray(spectrum.intensity,
                                                                                             dtype=float),
                           metadata=meta, metadata_harmonization=False)
