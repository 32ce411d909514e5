"""Peak filters as small pure functions, and a pipeline that is data.

Each filter is ``f(spectrum, **params) -> Spectrum | None``; ``None`` means the spectrum was rejected
and passes through the rest of the chain. A :class:`Pipeline` is an ordered list of ``(name, params)``
steps that is saved with every artefact made from it (``Pipeline.to_dict`` / ``from_dict``).

Each filter's parameters and their defaults are defined once, as a frozen dataclass (:data:`STEP_PARAMS`);
the per-spectrum filters here and the vectorised ones the encoder applies to a whole batch
(:func:`engine.models.encoders.spectrum.preprocess_flat`) both read a step's parameters through
:meth:`Pipeline.resolved`, so the two cannot disagree on a default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from engine.core.records import Spectrum

Filter = Callable[..., Spectrum | None]


@dataclass(frozen=True)
class MzRange:
    """``select_mz_range``: keep peaks with ``mz_from <= m/z <= mz_to``."""

    mz_from: float = 10.0
    mz_to: float = 1000.0


@dataclass(frozen=True)
class PrecursorRemoval:
    """``remove_precursor_peak``: drop peaks within ``tolerance_da`` below and all above the precursor."""

    tolerance_da: float = 1.6


@dataclass(frozen=True)
class IntensityFloor:
    """``relative_intensity_floor``: drop peaks below ``floor`` times the base peak."""

    floor: float = 0.001


@dataclass(frozen=True)
class TopPeaks:
    """``top_n_peaks``: keep the ``n`` most intense peaks."""

    n: int = 500


@dataclass(frozen=True)
class IntensityTransform:
    """``transform_intensity``: scale to a base peak of 1, then ``transform``."""

    transform: Literal["none", "sqrt", "log1p"] = "sqrt"


@dataclass(frozen=True)
class MinPeaks:
    """``require_min_peaks``: reject spectra with fewer than ``n`` peaks."""

    n: int = 5


#: The parameters (with their defaults) of every filter, by filter name.
STEP_PARAMS: dict[str, type[Any]] = {
    "select_mz_range": MzRange,
    "remove_precursor_peak": PrecursorRemoval,
    "relative_intensity_floor": IntensityFloor,
    "top_n_peaks": TopPeaks,
    "transform_intensity": IntensityTransform,
    "require_min_peaks": MinPeaks,
}


def select_mz_range(spectrum: Spectrum, *, mz_from: float = MzRange.mz_from,
                    mz_to: float = MzRange.mz_to) -> Spectrum:
    """Keep peaks with ``mz_from <= m/z <= mz_to``."""
    keep = (spectrum.mz >= mz_from) & (spectrum.mz <= mz_to)
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def remove_precursor_peak(spectrum: Spectrum, *, tolerance_da: float = PrecursorRemoval.tolerance_da) -> Spectrum:
    """Remove peaks within ``tolerance_da`` below and all peaks above the precursor m/z."""
    if spectrum.precursor_mz is None:
        return spectrum
    keep = spectrum.mz < spectrum.precursor_mz - tolerance_da
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def relative_intensity_floor(spectrum: Spectrum, *, floor: float = IntensityFloor.floor) -> Spectrum:
    """Drop peaks below ``floor`` times the base peak."""
    if spectrum.n_peaks == 0:
        return spectrum
    keep = spectrum.intensity >= floor * spectrum.intensity.max()
    return spectrum if keep.all() else spectrum.with_peaks(spectrum.mz[keep], spectrum.intensity[keep])


def top_n_peaks(spectrum: Spectrum, *, n: int = TopPeaks.n) -> Spectrum:
    """Keep the ``n`` most intense peaks (order by m/z preserved)."""
    if spectrum.n_peaks <= n:
        return spectrum
    idx = np.sort(np.argpartition(-spectrum.intensity, n - 1)[:n])
    return spectrum.with_peaks(spectrum.mz[idx], spectrum.intensity[idx])


def transform_intensity(spectrum: Spectrum, *,
                        transform: Literal["none", "sqrt", "log1p"] = IntensityTransform.transform) -> Spectrum:
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


def require_min_peaks(spectrum: Spectrum, *, n: int = MinPeaks.n) -> Spectrum | None:
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
    _resolved: tuple[tuple[str, Any], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved = []
        for name, params in self.steps:
            if name not in FILTERS:
                raise ValueError(f"unknown filter {name!r}; known: {', '.join(sorted(FILTERS))}")
            try:
                resolved.append((name, STEP_PARAMS[name](**params)))
            except TypeError as exc:
                raise ValueError(f"filter {name!r}: {exc}") from None
        object.__setattr__(self, "_resolved", tuple(resolved))

    def resolved(self) -> tuple[tuple[str, Any], ...]:
        """The steps with their parameters as :data:`STEP_PARAMS` dataclasses (defaults filled in; an
        unknown parameter is refused when the pipeline is made)."""
        return self._resolved

    def __call__(self, spectrum: Spectrum) -> Spectrum | None:
        result: Spectrum | None = spectrum
        for name, params in self._resolved:
            if result is None:
                return None
            result = FILTERS[name](result, **vars(params))
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
        ("select_mz_range", asdict(MzRange())),
        ("relative_intensity_floor", asdict(IntensityFloor())),
        ("top_n_peaks", asdict(TopPeaks())),
    ))
