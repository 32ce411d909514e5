"""Checks every spectrum must pass before it enters a table; each failure has a reason code.

Every numeric field a record can carry has stated bounds (:data:`BOUNDS`), so that no value read from a
file reaches an integer cast (the Arrow schema stores charge as int8, scan as int64), an index or a bin
computation unchecked: precursor and peak m/z in (0, 100000], intensity finite and >= 0, charge a
non-zero integer of at most 100 in size, retention time in [0, 1e7] s, a numeric collision energy
finite and at most 1e4 in size, scan number in [0, 2**63).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.core.adducts import parse_adduct
from engine.core.errors import InvalidRecordError
from engine.core.records import ION_MODES, IonMode, Spectrum

#: Reason codes used in skip-mode reports, with a human explanation.
REASONS: dict[str, str] = {
    "empty_spectrum": "no peaks",
    "non_finite_values": "NaN or infinite m/z or intensity",
    "negative_values": "negative or zero m/z, or negative intensity",
    "duplicate_mz": "the same m/z appears twice",
    "missing_precursor": "no precursor m/z",
    "invalid_precursor": "precursor m/z not a number in (0, 100000]",
    "invalid_charge": "charge 0, or beyond 100 in size",
    "invalid_retention_time": "retention time negative, not finite or beyond 1e7 s",
    "invalid_collision_energy": "numeric collision energy not finite or beyond 1e4 in size",
    "invalid_scan": "scan number negative or beyond 2**63 - 1",
    "mz_out_of_range": "peak m/z beyond 100000",
    "missing_ion_mode": "no ion mode, polarity, charge sign or adduct to tell it",
    "unknown_ion_mode": "ion mode is neither positive nor negative",
    "unknown_adduct": "adduct notation not understood",
    "parse_error": "a line or value that cannot be read",
    "file_error": "the whole file cannot be read",
    "not_ms2": "MS level other than 2",
    "profile_mode": "profile spectrum (not centroided)",
}


#: Largest precursor or peak m/z accepted (Th).
MAX_MZ = 100_000.0
#: Largest charge accepted, in size (the Arrow schema stores charge as int8).
MAX_CHARGE = 100
#: Largest retention time accepted (seconds; about 116 days).
MAX_RETENTION_TIME = 1e7
#: Largest numeric collision energy accepted, in size (eV, or normalised %).
MAX_COLLISION_ENERGY = 1e4
#: Largest scan number accepted (int64).
MAX_SCAN = 2**63 - 1
#: The stated bounds of each numeric field, for documentation and error messages.
BOUNDS: dict[str, str] = {
    "precursor_mz": f"0 < m/z <= {MAX_MZ:g}",
    "charge": f"1 <= |charge| <= {MAX_CHARGE}",
    "retention_time": f"0 <= seconds <= {MAX_RETENTION_TIME:g}",
    "collision_energy": f"a number of size <= {MAX_COLLISION_ENERGY:g} (or text such as 'Ramp 20-40')",
    "scan": f"0 <= scan <= {MAX_SCAN}",
    "mz": f"0 < m/z <= {MAX_MZ:g}",
    "intensity": "finite and >= 0",
}


def normalise_ion_mode(value: str | None) -> IonMode | str | None:
    """Map the many spellings of polarity to ``positive``/``negative``; unknown text is returned as is."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("", "n/a", "na", "none", "unknown"):
        return None
    if v in ("positive", "pos", "p", "+", "1", "positive scan", "positive ion mode"):
        return "positive"
    if v in ("negative", "neg", "n", "-", "-1", "negative scan", "negative ion mode"):
        return "negative"
    return value


def validate_spectrum(spectrum: Spectrum, *, path: str, record: str,
                      default_ion_mode: IonMode | None = None) -> Spectrum:
    """Return the spectrum (sorted by m/z, ion mode resolved) or raise :class:`InvalidRecordError`.

    Unsorted peaks are sorted (lossless); duplicate m/z, non-finite or negative values are refused.
    A missing ion mode is taken from the charge sign or the adduct, then from ``default_ion_mode``.
    """

    def bad(reason: str, detail: str) -> InvalidRecordError:
        return InvalidRecordError(detail, path=path, record=record, reason=reason)

    mz, inten = spectrum.mz, spectrum.intensity
    if mz.shape[0] == 0:
        raise bad("empty_spectrum", "spectrum has no peaks")
    if mz.shape != inten.shape:
        raise bad("parse_error", f"{mz.shape[0]} m/z values but {inten.shape[0]} intensities")
    if not (np.isfinite(mz).all() and np.isfinite(inten).all()):
        raise bad("non_finite_values", "NaN or infinite m/z or intensity")
    if (mz <= 0).any() or (inten < 0).any():
        raise bad("negative_values", "negative or zero m/z, or negative intensity")
    if (mz > MAX_MZ).any():
        raise bad("mz_out_of_range", f"peak m/z {float(mz.max()):g} beyond {MAX_MZ:g}")
    if (np.diff(mz) < 0).any():
        order = np.argsort(mz, kind="stable")
        mz, inten = mz[order], inten[order]
    if (np.diff(mz) == 0).any():
        dup = float(mz[:-1][np.diff(mz) == 0][0])
        raise bad("duplicate_mz", f"m/z {dup} appears more than once")
    prec = spectrum.precursor_mz
    if prec is None:
        raise bad("missing_precursor", "no precursor m/z")
    if not _real(prec) or not 0 < prec <= MAX_MZ:
        raise bad("invalid_precursor", f"precursor m/z {prec} is not in {BOUNDS['precursor_mz']}")
    problem = _header_problem(spectrum)
    if problem is not None:
        raise bad(*problem)
    mode = normalise_ion_mode(spectrum.ion_mode)
    if mode is not None and mode not in ION_MODES:
        raise bad("unknown_ion_mode", f"unknown ion mode {spectrum.ion_mode!r}")
    adduct_charge = None
    if spectrum.adduct:
        try:
            adduct_charge = parse_adduct(spectrum.adduct).charge
        except ValueError:
            raise bad("unknown_adduct", f"unknown adduct {spectrum.adduct!r}") from None
    if mode is None:
        if spectrum.charge:
            mode = "positive" if spectrum.charge > 0 else "negative"
        elif adduct_charge:
            mode = "positive" if adduct_charge > 0 else "negative"
        elif default_ion_mode is not None:
            mode = default_ion_mode
        else:
            raise bad("missing_ion_mode", "no ion mode (IONMODE/POLARITY), charge sign or adduct; "
                      "pass --ion-mode to set one")
    if mz is spectrum.mz and mode == spectrum.ion_mode:
        return spectrum
    from dataclasses import replace

    return replace(spectrum, mz=mz, intensity=inten, ion_mode=mode)  # type: ignore[arg-type]


def _peaks_ok(spectra: list[Spectrum]) -> npt.NDArray[np.bool_]:
    """Per spectrum: peaks non-empty, finite, positive m/z, non-negative intensity, strictly increasing m/z.

    Computed for many spectra at once on the concatenated peak arrays (no per-spectrum numpy calls).
    """
    n = len(spectra)
    lengths = np.fromiter((s.mz.shape[0] for s in spectra), dtype=np.int64, count=n)
    ok = lengths > 0
    ok &= np.fromiter((s.intensity.shape[0] for s in spectra), dtype=np.int64, count=n) == lengths
    if not ok.any():
        return ok
    mz = np.concatenate([s.mz for s in spectra])
    inten = np.concatenate([s.intensity for s in spectra])
    if mz.shape != inten.shape:
        return np.zeros(n, dtype=bool)
    owner = np.repeat(np.arange(n), lengths)
    bad_peak = ~np.isfinite(mz) | ~np.isfinite(inten) | (mz <= 0) | (mz > MAX_MZ) | (inten < 0)
    with np.errstate(invalid="ignore"):  # inf - inf: such peaks are flagged as not finite above
        step = np.diff(mz)
    same = owner[1:] == owner[:-1]
    bad_step = same & ~(step > 0)
    bad = np.zeros(n, dtype=bool)
    bad[owner[bad_peak]] = True
    bad[owner[1:][bad_step]] = True
    return ok & ~bad


def validate_many(spectra: list[Spectrum], *, path: str, records: list[str],
                  default_ion_mode: IonMode | None = None) -> list[Spectrum | InvalidRecordError]:
    """Validate many spectra at once; same results as :func:`validate_spectrum` on each, much faster.

    Spectra whose peaks pass a vectorised check and whose precursor, charge, ion mode and adduct are
    plainly fine are returned as they are; all others go through :func:`validate_spectrum` for repair
    (sorting, ion mode inference) or a precise error.
    """
    out: list[Spectrum | InvalidRecordError] = []
    peaks_ok = _peaks_ok(spectra) if spectra else np.zeros(0, dtype=bool)
    for spectrum, record, fine in zip(spectra, records, peaks_ok.tolist(), strict=True):
        prec = spectrum.precursor_mz
        if (fine and spectrum.ion_mode in ION_MODES and _real(prec) and 0 < prec <= MAX_MZ  # type: ignore[operator]
                and _header_problem(spectrum) is None
                and (not spectrum.adduct or _known_adduct(spectrum.adduct))):
            out.append(spectrum)
            continue
        try:
            out.append(validate_spectrum(spectrum, path=path, record=record, default_ion_mode=default_ion_mode))
        except InvalidRecordError as err:
            out.append(err)
    return out


def _real(value: object) -> bool:
    """A finite int or float (not a bool, not text)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _header_problem(spectrum: Spectrum) -> tuple[str, str] | None:
    """``(reason, message)`` for a charge, retention time, collision energy or scan out of bounds."""
    charge = spectrum.charge
    if charge is not None and (not isinstance(charge, (int, np.integer)) or not 1 <= abs(charge) <= MAX_CHARGE):
        return "invalid_charge", f"charge {charge} is not in {BOUNDS['charge']}"
    rt = spectrum.retention_time
    if rt is not None and (not _real(rt) or not 0 <= rt <= MAX_RETENTION_TIME):
        return "invalid_retention_time", f"retention time {rt} s is not in {BOUNDS['retention_time']}"
    ce = spectrum.collision_energy
    if ce is not None:
        try:
            energy = float(ce)
        except (TypeError, ValueError):
            energy = 0.0  # text such as "Ramp 20%-70%" or "35 eV" is kept as written
        if not math.isfinite(energy) or abs(energy) > MAX_COLLISION_ENERGY:
            return "invalid_collision_energy", f"collision energy {ce!r} is not {BOUNDS['collision_energy']}"
    scan = spectrum.scan
    if scan is not None and (not isinstance(scan, (int, np.integer)) or not 0 <= scan <= MAX_SCAN):
        return "invalid_scan", f"scan number {scan} is not in {BOUNDS['scan']}"
    return None


def _known_adduct(text: str) -> bool:
    try:
        parse_adduct(text)
    except ValueError:
        return False
    return True
