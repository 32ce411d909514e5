"""Which peaks of a spectrum a candidate's in-silico fragments explain, and how: the per-peak view of
the fragment evidence candidate ranking adds (:mod:`engine.queries.fragments`), for reports and plots.

Each peak the scorer weighs gets its best-weighted explanation exactly as
:func:`~engine.queries.fragments.explained_share` picks it: the neutral fragment mass, the cleavage
steps that give it (0 = the intact molecule), the hydrogen shift and the charge carrier of the ion, and
the explanation's weight. The weighted sum over the peaks is the explained share ranking uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.peaks import Peaks
from engine.core.records import Spectrum
from engine.queries.fragments import (
    ELECTRON,
    PROTON,
    SODIUM_ION,
    FragmentScorer,
    QueryPeaks,
    best_ions,
    carries_sodium,
    ion_grid,
)

_CARRIER_NAMES = {PROTON: "+H", -PROTON: "-H", SODIUM_ION: "+Na", ELECTRON: "+e", -ELECTRON: "-e"}


@dataclass(frozen=True)
class PeakAnnotation:
    """Per peak of the preprocessed spectrum (m/z ascending): its scoring weight (zero in the precursor
    region) and its best explanation; ``explanation`` is 0 and the other fields -1 / "" where no
    fragment ion lies within tolerance."""

    smiles: str
    mz: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]
    explanation: npt.NDArray[np.float64]
    fragment_mass: npt.NDArray[np.float64]
    ion_mz: npt.NDArray[np.float64]
    steps: npt.NDArray[np.int8]
    shift: npt.NDArray[np.int8]
    carrier: list[str]

    @property
    def explained(self) -> npt.NDArray[np.bool_]:
        """Peaks with an explanation."""
        return np.asarray(self.explanation > 0)

    @property
    def explained_share(self) -> float:
        """Share of the peak weight the fragments explain (the number candidate ranking uses)."""
        total = float(self.weight.sum())
        return float((self.weight * self.explanation).sum() / total) if total > 0 else 0.0


def annotate_peaks(scorer: FragmentScorer, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.floating[Any]],
                   precursor_mz: float | None, ion_mode: str | None, adduct: str | None, smiles: str
                   ) -> PeakAnnotation | None:
    """Explain each peak of a preprocessed spectrum (square-root intensities, as ranking scores it) by
    ``smiles``' fragments; None when the SMILES does not parse."""
    fragments = scorer.fragments(smiles)
    if fragments is None:
        return None
    settings = scorer.settings
    peaks = QueryPeaks.build(mz, intensity, precursor_mz, settings)
    # the ion table of FragmentScorer, with each ion's fragment, shift and carrier kept
    grid, grid_weight, shifts, carriers = ion_grid(fragments, ion_mode or "positive", carries_sodium(adduct),
                                                   settings)
    f_idx, s_idx, c_idx = np.unravel_index(np.arange(grid.size), grid.shape)
    ions, weight = grid.ravel(), scorer.temper(grid_weight.ravel())
    order = np.argsort(ions, kind="stable")
    ions, weight, f_idx, s_idx, c_idx = ions[order], weight[order], f_idx[order], s_idx[order], c_idx[order]
    best, chosen = best_ions(peaks.mz, ions, weight, settings)
    has = chosen >= 0
    pick = np.where(has, chosen, 0)
    return PeakAnnotation(
        smiles=smiles, mz=peaks.mz, intensity=np.asarray(intensity, dtype=np.float64), weight=peaks.weight,
        explanation=best,
        fragment_mass=np.where(has, fragments.masses[f_idx[pick]], np.nan),
        ion_mz=np.where(has, ions[pick], np.nan),
        steps=np.where(has, fragments.steps[f_idx[pick]], -1).astype(np.int8),
        shift=np.where(has, shifts[s_idx[pick]], -1).astype(np.int8),
        carrier=[_CARRIER_NAMES.get(float(carriers[c_idx[k]]), "") if ok else ""
                 for k, ok in zip(pick.tolist(), has.tolist(), strict=True)])


def annotate_spectrum(scorer: FragmentScorer, spectrum: Spectrum, smiles: str, pipeline: Any = None
                      ) -> PeakAnnotation | None:
    """:func:`annotate_peaks` for a raw spectrum, preprocessed with ``pipeline`` (default: the default
    model's) as ranking does; intensities in the result are the raw ones of the kept peaks."""
    from engine.models.encoders.spectrum import preprocess_flat
    from engine.models.model import model_pipeline

    peaks = preprocess_flat(Peaks.from_spectra([spectrum]), pipeline or model_pipeline())
    annotation = annotate_peaks(scorer, peaks.mz, peaks.intensity, spectrum.precursor_mz, spectrum.ion_mode,
                                spectrum.adduct, smiles)
    if annotation is None:
        return None
    raw = np.asarray(spectrum.intensity, dtype=np.float64)
    at = np.clip(np.searchsorted(spectrum.mz, annotation.mz), 0, max(spectrum.n_peaks - 1, 0))
    raw_kept = raw[at] if spectrum.n_peaks else np.zeros(0)
    return PeakAnnotation(annotation.smiles, annotation.mz, raw_kept, annotation.weight, annotation.explanation,
                          annotation.fragment_mass, annotation.ion_mz, annotation.steps, annotation.shift,
                          annotation.carrier)
