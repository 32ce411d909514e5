"""The peaks of many spectra in one container, unpacked from Arrow once.

:class:`Peaks` packs spectra in CSR layout: one flat m/z and one flat intensity array, and ``offsets``
(``n + 1`` values) so that the peaks of spectrum ``i`` are ``offsets[i]:offsets[i + 1]``; ``precursor_mz``
is NaN where a spectrum has none. A chunk of spectra is read from its record batch once
(:meth:`Peaks.from_arrow`) and every stage reads that object: embedding preprocesses it, identity and
analogue search and library evidence prepare their similarity forms from it, ranking scores fragments on
it. Forms derived from a container (a preprocessing pipeline's output, entropy-cleaned or top-n peaks)
are kept with it (:meth:`Peaks.derived`), so stages that share one chunk compute each form once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.records import Spectrum

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
T = TypeVar("T")


def expand_ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """Concatenate ``arange(s, s + n)`` for every (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    group_start = np.cumsum(lengths) - lengths
    return np.repeat(starts - group_start, lengths) + np.arange(total, dtype=np.int64)


def offsets_of(counts: npt.ArrayLike) -> IntArray:
    """CSR offsets (``n + 1`` values, starting at 0) of ``n`` peak counts."""
    c = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(c.shape[0] + 1, dtype=np.int64)
    np.cumsum(c, out=offsets[1:])
    return offsets


@dataclass(frozen=True, eq=False)
class Peaks:
    """Peaks of ``len(self)`` spectra: spectrum ``i`` owns ``mz[offsets[i]:offsets[i + 1]]`` (sorted by m/z
    as readers leave them) and the same slice of ``intensity``; ``precursor_mz`` is NaN where missing.

    Readers give float64 m/z and intensities (the float32 values of the spectrum schema, widened
    exactly); preprocessing for the model leaves float32 intensities, as the encoder takes them.
    """

    mz: FloatArray
    intensity: npt.NDArray[np.floating[Any]]
    offsets: IntArray
    precursor_mz: FloatArray
    _derived: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def n_peaks(self) -> IntArray:
        """Number of peaks of each spectrum."""
        return np.diff(self.offsets)

    @cached_property
    def spectrum_of_peak(self) -> IntArray:
        """Index of the spectrum each flat peak belongs to (non-decreasing)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.n_peaks)

    def derived(self, key: Hashable, make: Callable[[], T]) -> T:
        """The form of these peaks named ``key`` (e.g. a pipeline's output), made by ``make`` on first use
        and kept with the container."""
        if key not in self._derived:
            self._derived[key] = make()
        return cast(T, self._derived[key])

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_arrow(cls, table: pa.Table | pa.RecordBatch) -> Peaks:
        """Unpack the ``mz`` / ``intensity`` list columns (and ``precursor_mz`` when present) of a batch of
        the spectrum schema (sliced batches too)."""
        mz_col: Any = table.column("mz")
        in_col: Any = table.column("intensity")
        if isinstance(mz_col, pa.ChunkedArray):
            mz_col, in_col = mz_col.combine_chunks(), in_col.combine_chunks()
        offsets = mz_col.offsets.to_numpy().astype(np.int64)
        in_off = in_col.offsets.to_numpy().astype(np.int64)
        start, end = int(offsets[0]), int(offsets[-1])
        if not np.array_equal(offsets - start, in_off - in_off[0]):
            raise ValueError("m/z and intensity lists differ in length")
        mz = mz_col.values.to_numpy(zero_copy_only=False)[start:end].astype(np.float64)
        inten = in_col.values.to_numpy(zero_copy_only=False)[int(in_off[0]):int(in_off[-1])]
        names = table.schema.names
        if "precursor_mz" in names:
            prec_col: Any = table.column("precursor_mz")
            prec = np.asarray(prec_col.to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            prec = np.full(table.num_rows, np.nan)
        return cls(mz, inten.astype(np.float64), offsets - start, prec)

    @classmethod
    def from_spectra(cls, spectra: Sequence[Spectrum]) -> Peaks:
        """Pack spectra (their peaks are sorted by m/z, as readers guarantee)."""
        lengths = np.fromiter((s.mz.shape[0] for s in spectra), dtype=np.int64, count=len(spectra))
        mz = np.concatenate([s.mz for s in spectra]).astype(np.float64) if spectra else np.zeros(0)
        inten = (np.concatenate([s.intensity for s in spectra]).astype(np.float64)
                 if spectra else np.zeros(0))
        prec = np.array([np.nan if s.precursor_mz is None else s.precursor_mz for s in spectra],
                        dtype=np.float64)
        return cls(mz, inten, offsets_of(lengths), prec)

    @classmethod
    def from_segments(cls, spectrum_of_peak: IntArray, mz: FloatArray, intensity: npt.NDArray[np.floating[Any]],
                      precursor_mz: FloatArray) -> Peaks:
        """Peaks given with the (non-decreasing) spectrum index of each peak."""
        counts = np.bincount(spectrum_of_peak, minlength=precursor_mz.shape[0])
        return cls(mz, intensity, offsets_of(counts), precursor_mz)

    # -- selections ------------------------------------------------------------------------------
    def subset(self, index: npt.ArrayLike) -> Peaks:
        """The spectra at ``index``, packed anew."""
        idx = np.asarray(index, dtype=np.int64)
        flat = expand_ranges(self.offsets[idx], self.n_peaks[idx])
        return Peaks(self.mz[flat], self.intensity[flat], offsets_of(self.n_peaks[idx]), self.precursor_mz[idx])

    def slice(self, start: int, stop: int) -> Peaks:
        """Spectra ``start:stop`` (views of the flat arrays, no copy)."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return Peaks(self.mz[a:b], self.intensity[a:b], self.offsets[start:stop + 1] - a,
                     self.precursor_mz[start:stop])

    def keep(self, mask: npt.NDArray[np.bool_]) -> Peaks:
        """The peaks where ``mask`` (one value per flat peak) is True; every spectrum stays."""
        seg = self.spectrum_of_peak[mask]
        out = Peaks(self.mz[mask], self.intensity[mask], offsets_of(np.bincount(seg, minlength=len(self))),
                    self.precursor_mz)
        out.__dict__["spectrum_of_peak"] = seg   # known already: no need to expand the offsets again
        return out

    def with_intensity(self, intensity: npt.NDArray[np.floating[Any]]) -> Peaks:
        """The same peaks with other intensities."""
        return Peaks(self.mz, intensity, self.offsets, self.precursor_mz)
