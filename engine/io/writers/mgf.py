"""Write spectra as MGF so that reading the file back with :func:`engine.io.readers.mgf.read_mgf` gives them again.

Every field is written under the key the MGF reader maps first (``TITLE`` = the spectrum identifier,
``PEPMASS`` with the metadata ``precursor_intensity`` as second value, ``CHARGE`` as ``2+``/``1-``,
``IONMODE``, ``MSLEVEL``, ``RTINSECONDS``, ``SCANS``, ``NATIVE_ID``, ``COLLISION_ENERGY``, ``ADDUCT``,
``NAME``, ``SMILES``, ``INCHI``, ``INCHIKEY``, ``FORMULA``), then every metadata entry as
``key=value``. m/z values are written with Python's shortest round-trip ``repr``; intensities with the
``repr`` of their exact float64 value, so that they read back to the same float32.

What MGF cannot hold is changed, not lost silently: line breaks inside values become spaces and ``=``
in a metadata key becomes ``_``; a metadata key equal to one the writer emits for a field (such as
the original ``TITLE`` kept when identifiers are USIs) is left out, since the field wins on reading.
``source_file`` is not written: on reading it is the MGF file itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.core.fsutil import atomic_path
from engine.core.records import Spectrum
from engine.io.readers.mgf import PRECURSOR_INTENSITY_KEY

_FIELD_KEYS = ("TITLE", "PEPMASS", "CHARGE", "IONMODE", "MSLEVEL", "RTINSECONDS", "SCANS", "NATIVE_ID",
               "COLLISION_ENERGY", "ADDUCT", "NAME", "SMILES", "INCHI", "INCHIKEY", "FORMULA")


def _clean(value: str) -> str:
    if "\n" in value or "\r" in value:
        value = " ".join(value.splitlines())
    return value


def _charge(charge: int) -> str:
    if charge == 0:
        return "0"
    return f"{abs(charge)}{'+' if charge > 0 else '-'}"


def format_spectrum(spectrum: Spectrum) -> str:
    """One ``BEGIN IONS`` ... ``END IONS`` block (with a trailing blank line)."""
    meta = spectrum.metadata
    lines = ["BEGIN IONS", f"TITLE={_clean(spectrum.spectrum_id)}"]
    emitted = {"TITLE"}
    if spectrum.precursor_mz is not None:
        pepmass = repr(float(spectrum.precursor_mz))
        if PRECURSOR_INTENSITY_KEY in meta:
            pepmass += " " + _clean(meta[PRECURSOR_INTENSITY_KEY])
        lines.append(f"PEPMASS={pepmass}")
        emitted.add("PEPMASS")
    optional: list[tuple[str, object]] = [
        ("CHARGE", None if spectrum.charge is None else _charge(spectrum.charge)),
        ("IONMODE", spectrum.ion_mode),
        ("MSLEVEL", spectrum.ms_level),
        ("RTINSECONDS", None if spectrum.retention_time is None else repr(float(spectrum.retention_time))),
        ("SCANS", spectrum.scan),
        ("NATIVE_ID", spectrum.native_id),
        ("COLLISION_ENERGY", spectrum.collision_energy),
        ("ADDUCT", spectrum.adduct),
        ("NAME", spectrum.name),
        ("SMILES", spectrum.smiles),
        ("INCHI", spectrum.inchi),
        ("INCHIKEY", spectrum.inchikey),
        ("FORMULA", spectrum.formula),
    ]
    for key, value in optional:
        if value is not None:
            lines.append(f"{key}={_clean(str(value))}")
            emitted.add(key)
    for key, value in meta.items():
        if key == PRECURSOR_INTENSITY_KEY and "PEPMASS" in emitted:
            continue
        key = _clean(key).replace("=", "_")
        if not key.strip() or key.strip().upper() in emitted:
            continue
        lines.append(f"{key}={_clean(value)}")
    mz = np.asarray(spectrum.mz, dtype=np.float64).tolist()
    intensity = np.asarray(spectrum.intensity, dtype=np.float32).astype(np.float64).tolist()
    lines.extend(f"{m!r} {i!r}" for m, i in zip(mz, intensity, strict=True))
    lines.append("END IONS\n\n")
    return "\n".join(lines)


def write_mgf(spectra: Iterable[Spectrum], path: str | Path) -> int:
    """Write ``spectra`` to ``path`` (atomically: a temporary file renamed at the end); return the count."""
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for spectrum in spectra:
            handle.write(format_spectrum(spectrum))
            count += 1
    return count
