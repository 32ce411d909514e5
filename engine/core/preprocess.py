"""Peak filters as small pure functions, and a pipeline that is data.

Each filter is ``f(spectrum, **params) -> Spectrum | None``; ``None`` means the spectrum was rejected
and passes through the rest of the chain. A :class:`Pipeline` is an ordered list of ``(name, params)``
steps that is saved with every artefact made from it (``Pipeline.to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engine.core.records import Spectrum

Filter = Callable[..., Spectrum | None]


def select_mz_range(spectrum: Spectrum, *, mz_from: float = 10.0, mz_to: float = 1000.0) -> Spectrum:
    """Keep peaks with ``mz_from <= m/z <= mz_to``."""
    keep = (spectrum.mz >= mz_from) & (spectrum.mz <= mz_to)
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def remove_precursor_peak(spectrum: Spectrum, *, tolerance_da: float = 1.6) -> Spectrum:
    """Remove peaks within ``tolerance_da`` below and all peaks above the precursor m/z."""
    if spectrum.precursor_mz is None:
        return spectrum
    keep = spectrum.mz < spectrum.precursor_mz - tolerance_da
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def relative_intensity_floor(spectrum: Spectrum, *, floor: float = 0.001) -> Spectrum:
    """Drop peaks below ``floor`` times the base peak."""
    if spectrum.n_peaks == 0:
        return spectrum
    keep = spectrum.intensity >= floor * spectrum.intensity.max()
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def top_n_peaks(spectrum: Spectrum, *, n: int = 500) -> Spectrum:
    """Keep the ``n`` most intense peaks (order by m/z preserved)."""
    if spectrum.n_peaks <= n:
        return spectrum
    idx = np.sort(np.argpartition(-spectrum.intensity, n - 1)[:n])
    return spectrum.with_peaks(spectrum.mz[idx], spectrum.intensity[idx])


def transform_intensity(spectrum: Spectrum, *,
                        transform: Literal["none", "sqrt", "log1p"] = "sqrt") -> Spectrum:
    """Scale to a base peak of 1, then apply ``transform``."""
    if spectrum.n_peaks == 0:
        return spectrum
    base = max(float(spectrum.intensity.max()), float(np.finfo(np.float32).tiny))
    inten = spectrum.intensity / base
    if transform == "sqrt":
        inten = np.sqrt(inten)
    elif transform == "log1p":
        inten = np.log1p(inten * 100.0) / np.log1p(100.0)
    elif transform != "none":
        raise ValueError(f"unknown intensity transform {transform!r}")
    return spectrum.with_peaks(spectrum.mz, inten.astype(np.float32))


def require_min_peaks(spectrum: Spectrum, *, n: int = 5) -> Spectrum | None:
    """Reject spectra with fewer than ``n`` peaks."""
    return spectrum if spectrum.n_peaks >= n else None


FILTERS: dict[str, Filter] = {
    "select_mz_range": select_mz_range,
    "remove_precursor_peak": remove_precursor_peak,
    "relative_intensity_floor": relative_intensity_floor,
    "top_n_peaks": top_n_peaks,
    "transform_intensity": transform_intensity,
    "require_min_peaks": require_min_peaks,
}


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of ``(filter name, params)`` steps."""

    steps: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name, _ in self.steps:
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r}; known: {', '.join(sorted(FILTERS))}")

    def __call__(self, spectrum: Spectrum) -> Spectrum | None:
        result: Spectrum | None = spectrum
        for name, params in self.steps:
            if result is None:
                return None
            result = FILTERS[name](result, **params)
        return result

    def apply(self, spectra: Iterable[Spectrum]) -> Iterator[Spectrum | None]:
        """Apply to many spectra, yielding ``None`` for rejected ones (keeps positions aligned)."""
        for s in spectra:
            yield self(s)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [{"filter": name, "params": dict(params)} for name, params in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        return cls(tuple((step["filter"], dict(step.get("params", {}))) for step in data["steps"]))

    def digest(self) -> str:
        """Short content hash of the pipeline, for manifests."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def default_pipeline() -> Pipeline:
    """The pipeline used before embedding (MS2DeepScore-like: 10-1000 m/z, top 500 peaks)."""
    return Pipeline((
        ("select_mz_range", {"mz_from": 10.0, "mz_to": 1000.0}),
        ("relative_intensity_floor", {"floor": 0.001}),
        ("top_n_peaks", {"n": 500}),
    ))
