"""Plain records shared by every stage: spectra, tolerances. No heavy imports beyond numpy."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

IonMode = Literal["positive", "negative"]
ION_MODES: tuple[IonMode, ...] = ("positive", "negative")
PROTON_MASS = 1.007276466621


@dataclass(frozen=True, slots=True)
class Spectrum:
    """One MS/MS spectrum as read from a file.

    ``spectrum_id`` is the stable identifier every later result refers to (USI when a MassIVE dataset
    is named, else TITLE / native id qualified by the file name). ``mz`` is float64 and sorted,
    ``intensity`` float32 of the same length. ``retention_time`` is in seconds.
    """

    spectrum_id: str
    mz: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float32]
    precursor_mz: float | None
    charge: int | None = None
    ion_mode: IonMode | None = None
    source_file: str = ""
    native_id: str | None = None
    scan: int | None = None
    ms_level: int = 2
    retention_time: float | None = None
    collision_energy: str | None = None
    adduct: str | None = None
    name: str | None = None
    smiles: str | None = None
    inchi: str | None = None
    inchikey: str | None = None
    formula: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def n_peaks(self) -> int:
        return int(self.mz.shape[0])

    def with_peaks(self, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.float32]) -> Spectrum:
        """Return a copy with other peaks (filters use this; spectra are immutable)."""
        return replace(self, mz=mz, intensity=intensity)


@dataclass(frozen=True, slots=True)
class Tolerance:
    """A mass tolerance in ppm or Da."""

    value: float
    unit: Literal["ppm", "Da"] = "ppm"

    def __post_init__(self) -> None:
        if not np.isfinite(self.value) or self.value < 0:
            raise ValueError(f"tolerance must be a finite non-negative number, got {self.value}")

    def window(self, mz: float) -> tuple[float, float]:
        """Return the (low, high) bounds around ``mz``."""
        delta = mz * self.value * 1e-6 if self.unit == "ppm" else self.value
        return mz - delta, mz + delta
