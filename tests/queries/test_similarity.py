"""The vectorised similarities agree with matchms and ms_entropy on real MassBank spectra."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.core.peaks import Peaks
from engine.core.records import Spectrum
from engine.queries.similarity import (
    cosine_greedy,
    entropy_similarity,
    matched_peaks,
    modified_cosine,
    prepare_entropy,
)


def _pairs(table: pa.Table, n_random: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs plus every same-structure pair (where peaks really match)."""
    rng = np.random.default_rng(0)
    n = table.num_rows
    keys = np.asarray(table.column("inchikey").to_pylist())
    ii, jj = np.triu_indices(n, 1)
    same = keys[ii] == keys[jj]
    ia = np.r_[rng.integers(0, n, n_random), ii[same], np.arange(n)]
    ib = np.r_[rng.integers(0, n, n_random), jj[same], np.arange(n)]
    return ia, ib


def _matchms(peaks: Peaks) -> list:
    from matchms import Spectrum as MatchmsSpectrum

    return [MatchmsSpectrum(mz=peaks.mz[peaks.offsets[i]:peaks.offsets[i + 1]],
                            intensities=peaks.intensity[peaks.offsets[i]:peaks.offsets[i + 1]],
                            metadata={"precursor_mz": float(peaks.precursor_mz[i])})
            for i in range(len(peaks))]


@pytest.mark.parametrize(("kind", "tolerance"), [("cosine", 0.1), ("cosine", 0.02), ("modified", 0.1),
                                                 ("modified", 0.02)])
def test_greedy_cosines_equal_matchms(massbank_sample: pa.Table, kind: str, tolerance: float) -> None:
    from matchms.similarity import CosineGreedy, ModifiedCosineGreedy

    peaks = Peaks.from_arrow(massbank_sample)
    ia, ib = _pairs(massbank_sample)
    func = cosine_greedy if kind == "cosine" else modified_cosine
    scores, matches = func(peaks, peaks, ia, ib, tolerance=tolerance)
    ref = (CosineGreedy if kind == "cosine" else ModifiedCosineGreedy)(tolerance=tolerance)
    spectra = _matchms(peaks)
    expected = np.array([ref.pair(spectra[i], spectra[j]) for i, j in zip(ia, ib, strict=True)])
    np.testing.assert_allclose(scores, expected["score"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(matches, expected["matches"])
    # the sample holds real matches: identical spectra score 1, same structures mostly high
    n = massbank_sample.num_rows
    np.testing.assert_allclose(scores[-n:], 1.0, atol=1e-12)
    assert (scores > 0.5).sum() > 50


def test_modified_cosine_mz_power_and_intensity_power(massbank_sample: pa.Table) -> None:
    from matchms.similarity import ModifiedCosineGreedy

    peaks = Peaks.from_arrow(massbank_sample)
    ia, ib = _pairs(massbank_sample, n_random=300)
    scores, _ = modified_cosine(peaks, peaks, ia, ib, tolerance=0.05, mz_power=1.0, intensity_power=0.5)
    ref = ModifiedCosineGreedy(tolerance=0.05, mz_power=1.0, intensity_power=0.5)
    spectra = _matchms(peaks)
    expected = [ref.pair(spectra[i], spectra[j])["score"] for i, j in zip(ia, ib, strict=True)]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


@pytest.mark.parametrize("precursor_removal_da", [None, 1.6])
def test_entropy_equals_ms_entropy(massbank_sample: pa.Table, precursor_removal_da: float | None) -> None:
    import ms_entropy

    peaks = Peaks.from_arrow(massbank_sample)
    ia, ib = _pairs(massbank_sample)
    prepared = prepare_entropy(peaks, tolerance_da=0.02, precursor_removal_da=precursor_removal_da)
    scores = entropy_similarity(prepared, prepared, ia, ib)
    expected = []
    for i, j in zip(ia, ib, strict=True):
        spec = []
        for k in (i, j):
            arr = np.stack([peaks.mz[peaks.offsets[k]:peaks.offsets[k + 1]],
                            peaks.intensity[peaks.offsets[k]:peaks.offsets[k + 1]]], 1).astype(np.float32)
            if precursor_removal_da is not None:
                arr = ms_entropy.clean_spectrum(arr, max_mz=float(peaks.precursor_mz[k]) - precursor_removal_da,
                                                min_ms2_difference_in_da=0.04)
            spec.append(arr)
        expected.append(ms_entropy.calculate_entropy_similarity(spec[0], spec[1], ms2_tolerance_in_da=0.02))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert scores.min() >= 0 and scores.max() <= 1 + 1e-6


def test_peakset_from_arrow_slices_and_spectra_agree(massbank_sample: pa.Table,
                                                      sample_spectra: list[Spectrum]) -> None:
    whole = Peaks.from_spectra(sample_spectra[10:30])
    sliced = Peaks.from_arrow(massbank_sample.slice(10, 20))
    np.testing.assert_array_equal(whole.offsets, sliced.offsets)
    np.testing.assert_array_equal(whole.mz, sliced.mz)
    np.testing.assert_allclose(whole.intensity, sliced.intensity)
    sub = Peaks.from_spectra(sample_spectra).subset([12, 3])
    np.testing.assert_array_equal(sub.mz[:sub.offsets[1]], sample_spectra[12].mz)


def test_edge_cases() -> None:
    def spec(mz: list[float], inten: list[float], prec: float | None) -> Spectrum:
        return Spectrum("s", np.asarray(mz, float), np.asarray(inten, np.float32), prec)

    a = Peaks.from_spectra([spec([100.0, 150.0], [1.0, 0.5], 300.0), spec([], [], 300.0),
                              spec([100.0], [1.0], None)])
    scores, matches = cosine_greedy(a, a, [0, 0, 1], [0, 1, 1])
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(matches, [2, 0, 0])
    with pytest.raises(ValueError, match="precursor"):
        modified_cosine(a, a, [0], [2])
    # a peak shifted by the precursor difference matches only in the modified cosine
    b = Peaks.from_spectra([spec([100.0, 150.0], [1.0, 1.0], 300.0), spec([100.0, 164.0], [1.0, 1.0], 314.0)])
    assert cosine_greedy(b, b, [0], [1])[0][0] == pytest.approx(0.5)
    assert modified_cosine(b, b, [0], [1])[0][0] == pytest.approx(1.0)
    _, pa_, pb_ = matched_peaks(b, b, [0], [1], modified=True)
    assert sorted(zip(pa_.tolist(), pb_.tolist(), strict=True)) == [(0, 2), (1, 3)]
    with pytest.raises(ValueError, match="length"):
        cosine_greedy(b, b, [0, 1], [0])


def test_all_pairs_are_symmetric_and_match_the_array_reference(massbank_sample: pa.Table) -> None:
    """The compiled kernels agree with the plain numpy statements of the algorithms on every pair."""
    from engine.queries.similarity import entropy_similarity_reference

    peaks = Peaks.from_arrow(massbank_sample)
    n = len(peaks)
    ia, ib = (m.ravel() for m in np.meshgrid(np.arange(n), np.arange(n)))
    scores, matches = modified_cosine(peaks, peaks, ia, ib)
    np.testing.assert_allclose(scores.reshape(n, n), scores.reshape(n, n).T, atol=1e-9)
    pair, _, _ = matched_peaks(peaks, peaks, ia, ib, modified=True)  # numpy greedy assignment
    np.testing.assert_array_equal(np.bincount(pair, minlength=ia.shape[0]), matches)
    prepared = prepare_entropy(peaks)
    kernel = entropy_similarity(prepared, prepared, ia, ib)
    np.testing.assert_allclose(kernel, entropy_similarity_reference(prepared, prepared, ia, ib), atol=1e-12)
    assert (kernel > 0.5).sum() > n  # more than the diagonal: real matches were scored


def test_top_peaks_keeps_the_most_intense(massbank_sample: pa.Table) -> None:
    from engine.queries.similarity import top_peaks

    peaks = Peaks.from_arrow(massbank_sample)
    capped = top_peaks(peaks, 5, sqrt=True)
    assert (capped.n_peaks == np.minimum(peaks.n_peaks, 5)).all()
    for i in (0, 7, 50):
        mz = peaks.mz[peaks.offsets[i]:peaks.offsets[i + 1]]
        inten = peaks.intensity[peaks.offsets[i]:peaks.offsets[i + 1]]
        expected = np.sort(mz[np.argsort(-inten, kind="stable")[:5]])
        np.testing.assert_array_equal(capped.mz[capped.offsets[i]:capped.offsets[i + 1]], expected)
    np.testing.assert_allclose(capped.intensity.max(), np.sqrt(peaks.intensity.max()))
