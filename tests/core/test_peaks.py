"""The one peak container: unpacking from Arrow and spectra, selections, derived forms."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.core.peaks import Peaks
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch


def _spectra() -> list[Spectrum]:
    return [Spectrum("a", np.array([50.0, 80.0, 120.0]), np.array([1.0, 5.0, 2.0], np.float32), 200.0),
            Spectrum("b", np.zeros(0), np.zeros(0, np.float32), None),
            Spectrum("c", np.array([60.0, 99.5]), np.array([3.0, 4.0], np.float32), 150.0),
            Spectrum("d", np.array([70.0]), np.array([7.0], np.float32), 300.0)]


def test_from_arrow_matches_from_spectra() -> None:
    spectra = _spectra()
    a, b = Peaks.from_arrow(spectra_to_batch(spectra)), Peaks.from_spectra(spectra)
    for x, y in ((a.mz, b.mz), (a.intensity, b.intensity), (a.offsets, b.offsets)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.precursor_mz, [200.0, np.nan, 150.0, 300.0])
    assert a.intensity.dtype == np.float64 and len(a) == 4
    assert a.n_peaks.tolist() == [3, 0, 2, 1]
    assert a.spectrum_of_peak.tolist() == [0, 0, 0, 2, 2, 3]


def test_sliced_and_chunked_inputs_read_their_own_rows() -> None:
    spectra = _spectra()
    batch = spectra_to_batch(spectra)
    sliced = Peaks.from_arrow(batch.slice(2, 2))
    assert sliced.offsets.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(sliced.mz, [60.0, 99.5, 70.0])
    chunked = Peaks.from_arrow(pa.Table.from_batches([batch.slice(0, 2), batch.slice(2, 2)]))
    np.testing.assert_array_equal(chunked.mz, Peaks.from_arrow(batch).mz)


def test_mismatched_lists_are_refused() -> None:
    batch = pa.record_batch({"mz": pa.array([[1.0, 2.0]], pa.list_(pa.float64())),
                             "intensity": pa.array([[1.0]], pa.list_(pa.float32()))})
    with pytest.raises(ValueError, match="differ in length"):
        Peaks.from_arrow(batch)


def test_selections() -> None:
    peaks = Peaks.from_spectra(_spectra())
    sub = peaks.subset([3, 0])
    assert sub.offsets.tolist() == [0, 1, 4]
    np.testing.assert_array_equal(sub.mz, [70.0, 50.0, 80.0, 120.0])
    part = peaks.slice(1, 3)
    assert part.offsets.tolist() == [0, 0, 2] and part.precursor_mz.shape == (2,)
    kept = peaks.keep(peaks.intensity > 2.5)
    assert kept.offsets.tolist() == [0, 1, 1, 3, 4]
    assert kept.spectrum_of_peak.tolist() == [0, 2, 2, 3]
    np.testing.assert_array_equal(kept.spectrum_of_peak,
                                  np.repeat(np.arange(4), kept.n_peaks))
    again = Peaks.from_segments(kept.spectrum_of_peak, kept.mz, kept.intensity, kept.precursor_mz)
    np.testing.assert_array_equal(again.offsets, kept.offsets)


def test_derived_forms_are_made_once() -> None:
    peaks = Peaks.from_spectra(_spectra())
    calls = []

    def make() -> int:
        calls.append(1)
        return len(calls)

    assert peaks.derived("x", make) == 1 and peaks.derived("x", make) == 1 and len(calls) == 1
    assert peaks.subset([0]).derived("x", make) == 2    # a new container starts empty
