"""Exact spectral similarity, vectorised over many spectrum pairs at once.

Spectra come packed in :class:`~engine.core.peaks.Peaks` (CSR layout: flat m/z and intensity arrays, offsets),
and every function scores a list of pairs ``(a[i], b[i])`` in one pass of numpy array operations; no
Python loop runs per peak or per pair.

- :func:`cosine_greedy` / :func:`modified_cosine` follow matchms ``CosineGreedy`` /
  ``ModifiedCosineGreedy``: candidate peak pairs within ``tolerance`` Da (for the modified cosine also
  after shifting ``b`` by the precursor difference), sorted by intensity product, assigned greedily
  (each peak used at most once). The greedy assignment is computed as the *locally dominant edge*
  matching, which for a strict total order of the edges equals the sequential greedy one; ties are
  broken in matchms' order, so the scores are identical to matchms'.
- :func:`entropy_similarity` follows ms_entropy ``calculate_entropy_similarity`` (Li et al., Nat.
  Methods 2021): spectra cleaned and centroided with ms_entropy's ``clean_spectrum``, entropy-weighted
  intensities, ``1/2 * sum f(a+b) - f(a) - f(b)`` over matched peaks with ``f(x) = x log2 x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.peaks import Peaks, expand_ranges, offsets_of

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Extra width of the coarse search window; candidates are then filtered with matchms' exact test.
_PAD = 1e-3


def top_peaks(peaks: Peaks, n: int, *, sqrt: bool = False) -> Peaks:
    """Keep the ``n`` most intense peaks of every spectrum (m/z order kept); ``sqrt`` also takes the square
    root of the intensities. Vectorised over the whole set; kept with ``peaks`` (:meth:`Peaks.derived`)."""
    return peaks.derived(("top_peaks", n, sqrt), lambda: _top_peaks(peaks, n, sqrt))


def _top_peaks(peaks: Peaks, n: int, sqrt: bool) -> Peaks:
    seg = peaks.spectrum_of_peak
    order = np.lexsort((-peaks.intensity, seg))
    start = np.repeat(peaks.offsets[:-1], peaks.n_peaks)
    keep_sorted = (np.arange(order.shape[0]) - start) < n
    keep = np.zeros(order.shape[0], dtype=bool)
    keep[order[keep_sorted]] = True
    offsets = offsets_of(np.bincount(seg[keep], minlength=len(peaks)))
    inten = peaks.intensity[keep]
    return Peaks(peaks.mz[keep], np.sqrt(inten) if sqrt else inten, offsets, peaks.precursor_mz)


def _spectrum_keys(peaks: Peaks) -> tuple[FloatArray, float]:
    """Sorted search keys ``spectrum_index * stride + mz`` and the stride."""
    top = float(peaks.mz.max()) if peaks.mz.size else 0.0
    stride = float(2 ** np.ceil(np.log2(max(top, 1.0) * 4 + 16)))
    return peaks.spectrum_of_peak * stride + peaks.mz, stride


def _find_peak_pairs(a: Peaks, b: Peaks, ia: IntArray, ib: IntArray, tolerance: float,
                     shift: FloatArray) -> tuple[IntArray, IntArray, IntArray]:
    """All (pair, peak of a, peak of b) with ``|mz_a - (mz_b + shift[pair])| <= tolerance``.

    The test is matchms' ``mz_a - tol <= mz_b + shift <= mz_a + tol``, evaluated in float64.
    Returned edges are ordered by pair, then peak of ``a``, then peak of ``b`` (matchms' order).
    The peaks of the side with more distinct spectra are looked up among the other side's (a small,
    cache-friendly key array when one query meets many library spectra).
    """
    if np.unique(ib).shape[0] < np.unique(ia).shape[0]:
        pair, pb, pa = _lookup(b, a, ib, ia, tolerance, shift, sign=-1.0)
    else:
        pair, pa, pb = _lookup(a, b, ia, ib, tolerance, shift, sign=1.0)
    order = np.lexsort((pb, pa, pair))
    return pair[order], pa[order], pb[order]


def _lookup(keyed: Peaks, probe: Peaks, ik: IntArray, ip: IntArray, tolerance: float, shift: FloatArray,
            sign: float) -> tuple[IntArray, IntArray, IntArray]:
    """Edges (pair, peak of ``keyed``, peak of ``probe``): probe peaks searched among keyed peaks.

    ``sign=1``: keyed is ``a``, the probe ``b`` is shifted by ``+shift``; ``sign=-1``: keyed is ``b``.
    """
    keyed, ik, flat = _restrict_map(keyed, ik)
    # visit pairs in keyed-spectrum order: the binary searches then walk the key array almost in order
    visit = np.argsort(ik, kind="stable")
    ik, ip = ik[visit], ip[visit]
    n_probe = probe.n_peaks[ip]
    pair_of_q = np.repeat(np.arange(ik.shape[0], dtype=np.int64), n_probe)
    peak_p = expand_ranges(probe.offsets[ip], n_probe)
    target = probe.mz[peak_p] + sign * shift[visit][pair_of_q]
    keys, stride = _spectrum_keys(keyed)
    base = ik[pair_of_q] * stride
    lo = np.searchsorted(keys, base + target - tolerance - _PAD, side="left")
    hi = np.searchsorted(keys, base + target + tolerance + _PAD, side="right")
    lo = np.maximum(lo, keyed.offsets[ik][pair_of_q])
    hi = np.minimum(hi, keyed.offsets[ik + 1][pair_of_q])
    counts = np.maximum(hi - lo, 0)
    edge_q = np.repeat(np.arange(lo.shape[0], dtype=np.int64), counts)
    peak_k = expand_ranges(lo, counts)
    pair, peak_p = visit[pair_of_q[edge_q]], peak_p[edge_q]
    if sign > 0:  # matchms' test: mz_a - tol <= mz_b + shift <= mz_a + tol
        mz_a, mz_b_shifted = keyed.mz[peak_k], probe.mz[peak_p] + shift[pair]
    else:
        mz_a, mz_b_shifted = probe.mz[peak_p], keyed.mz[peak_k] + shift[pair]
    ok = (mz_b_shifted >= mz_a - tolerance) & (mz_b_shifted <= mz_a + tolerance)
    peak_k = peak_k[ok] if flat is None else flat[peak_k[ok]]
    return pair[ok], peak_k, peak_p[ok]


def _greedy_assignment(node_a: IntArray, node_b: IntArray, rank: IntArray) -> npt.NDArray[np.bool_]:
    """Greedy maximum-weight matching: edges taken in ``rank`` order (0 first) when both ends are free.

    Computed as repeated rounds of *locally dominant* edges (the best remaining edge at both its ends),
    which gives exactly the sequential greedy matching for a strict order; a few rounds suffice.
    """
    n_edges = rank.shape[0]
    chosen = np.zeros(n_edges, dtype=bool)
    if n_edges == 0:
        return chosen
    _, node_a = np.unique(node_a, return_inverse=True)
    _, node_b = np.unique(node_b, return_inverse=True)
    used_a = np.zeros(int(node_a.max()) + 1, dtype=bool)
    used_b = np.zeros(int(node_b.max()) + 1, dtype=bool)
    alive = np.arange(n_edges, dtype=np.int64)
    sentinel = np.iinfo(np.int64).max
    best_a = np.full(used_a.shape[0], sentinel, dtype=np.int64)
    best_b = np.full(used_b.shape[0], sentinel, dtype=np.int64)
    while alive.size:
        ea, eb, er = node_a[alive], node_b[alive], rank[alive]
        best_a[ea] = sentinel
        best_b[eb] = sentinel
        np.minimum.at(best_a, ea, er)
        np.minimum.at(best_b, eb, er)
        win = (best_a[ea] == er) & (best_b[eb] == er)
        winners = alive[win]
        chosen[winners] = True
        used_a[node_a[winners]] = True
        used_b[node_b[winners]] = True
        alive = alive[~(used_a[ea] | used_b[eb])]
    return chosen


def _restrict(peaks: Peaks, index: IntArray) -> tuple[Peaks, IntArray]:
    """Only the spectra ``index`` refers to (when they are few), so the cost follows the pairs, not the set."""
    sub, new_index, _ = _restrict_map(peaks, index)
    return sub, new_index


def _restrict_map(peaks: Peaks, index: IntArray) -> tuple[Peaks, IntArray, IntArray | None]:
    """As :func:`_restrict`, plus the original flat peak of every peak of the subset (None: unchanged)."""
    if index.shape[0] == 0:
        return peaks, index, None
    used, inverse = np.unique(index, return_inverse=True)
    if used.shape[0] * 2 >= len(peaks):
        return peaks, index, None
    flat = expand_ranges(peaks.offsets[used], peaks.n_peaks[used])
    return peaks.subset(used), inverse.astype(np.int64), flat


def _as_pairs(ia: npt.ArrayLike, ib: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    ia_ = np.asarray(ia, dtype=np.int64).ravel()
    ib_ = np.asarray(ib, dtype=np.int64).ravel()
    if ia_.shape != ib_.shape:
        raise ValueError(f"pair index arrays differ in length: {ia_.shape[0]} and {ib_.shape[0]}")
    return ia_, ib_


def _segment_norm(weights: FloatArray, peaks: Peaks) -> FloatArray:
    seg = peaks.spectrum_of_peak
    return np.sqrt(np.bincount(seg, weights=weights ** 2, minlength=len(peaks)))


def _precursor_shift(a: Peaks, b: Peaks, ia: IntArray, ib: IntArray, tolerance: float
                     ) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per pair: the modified cosine's shift ``precursor_a - precursor_b`` and whether it applies (matchms
    falls back to the plain cosine when the shift is within ``tolerance``)."""
    shift = a.precursor_mz[ia] - b.precursor_mz[ib]
    if np.isnan(shift).any():
        bad = int(np.flatnonzero(np.isnan(shift))[0])
        raise ValueError(f"modified cosine needs precursor m/z on both spectra (pair {bad} lacks one)")
    return shift, np.abs(shift) > tolerance


def _greedy_edges(a: Peaks, b: Peaks, ia: IntArray, ib: IntArray, tolerance: float, mz_power: float,
                  intensity_power: float, modified: bool
                  ) -> tuple[IntArray, IntArray, IntArray, FloatArray, npt.NDArray[np.bool_]]:
    """Candidate edges (pair, peak of a, peak of b, weight) and which the greedy assignment keeps."""
    n_pairs = ia.shape[0]
    wa = a.mz ** mz_power * a.intensity ** intensity_power
    wb = b.mz ** mz_power * b.intensity ** intensity_power
    zero = np.zeros(n_pairs)
    pair, pa_, pb_ = _find_peak_pairs(a, b, ia, ib, tolerance, zero)
    part = np.zeros(pair.shape[0], dtype=np.int64)
    if modified:
        shift, use = _precursor_shift(a, b, ia, ib, tolerance)
        sel = np.flatnonzero(use)
        if sel.size:
            p2, a2, b2 = _find_peak_pairs(a, b, ia[sel], ib[sel], tolerance, shift[sel])
            pair = np.concatenate([pair, sel[p2]])
            pa_ = np.concatenate([pa_, a2])
            pb_ = np.concatenate([pb_, b2])
            part = np.concatenate([part, np.ones(p2.shape[0], dtype=np.int64)])
    weight = wa[pa_] * wb[pb_]
    # matchms: concatenate (direct, shifted) per pair, stable-sort by weight ascending, then reverse;
    # i.e. weight descending and, among equal weights, the later edge first.
    position = np.arange(pair.shape[0], dtype=np.int64)
    within = np.lexsort((position, part, pair))  # matchms' concatenation order inside each pair
    seq = np.empty_like(position)
    seq[within] = np.arange(pair.shape[0])
    order = np.lexsort((-seq, -weight))
    rank = np.empty_like(position)
    rank[order] = position
    # Peaks are nodes per pair: (pair, peak) made unique by offsetting with the pair index.
    stride = max(int(a.mz.shape[0]), int(b.mz.shape[0]), 1)
    chosen = _greedy_assignment(pair * stride + pa_, pair * stride + pb_, rank)
    return pair, pa_, pb_, weight, chosen


def _cosine(a: Peaks, b: Peaks, ia: IntArray, ib: IntArray, tolerance: float, mz_power: float,
            intensity_power: float, modified: bool) -> tuple[FloatArray, IntArray]:
    from engine.queries.kernels import greedy_cosine_pairs

    n_pairs = ia.shape[0]
    wa = a.mz ** mz_power * a.intensity ** intensity_power
    wb = b.mz ** mz_power * b.intensity ** intensity_power
    if modified:
        shift, use = _precursor_shift(a, b, ia, ib, tolerance)
    else:
        shift, use = np.zeros(n_pairs), np.zeros(n_pairs, dtype=bool)
    total, matches = greedy_cosine_pairs(a.mz, wa, a.offsets, b.mz, wb, b.offsets, ia, ib,
                                         np.ascontiguousarray(shift, dtype=np.float64), use, float(tolerance))
    denom = _segment_norm(wa, a)[ia] * _segment_norm(wb, b)[ib]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(denom > 0, total / np.where(denom > 0, denom, 1.0), 0.0)
    return score, matches


def cosine_greedy(a: Peaks, b: Peaks, ia: npt.ArrayLike, ib: npt.ArrayLike, *,
                  tolerance: float = 0.1, mz_power: float = 0.0, intensity_power: float = 1.0
                  ) -> tuple[FloatArray, IntArray]:
    """Greedy cosine of pairs ``(a[ia[i]], b[ib[i]])``; returns (scores, matched peak counts).

    Same result as matchms ``CosineGreedy(tolerance, mz_power, intensity_power).pair(a, b)``.
    """
    ia_, ib_ = _as_pairs(ia, ib)
    (a, ia_), (b, ib_) = _restrict(a, ia_), _restrict(b, ib_)
    return _cosine(a, b, ia_, ib_, tolerance, mz_power, intensity_power, modified=False)


def modified_cosine(a: Peaks, b: Peaks, ia: npt.ArrayLike, ib: npt.ArrayLike, *,
                    tolerance: float = 0.1, mz_power: float = 0.0, intensity_power: float = 1.0
                    ) -> tuple[FloatArray, IntArray]:
    """Greedy modified cosine of pairs ``(a[ia[i]], b[ib[i]])``; returns (scores, matched peak counts).

    Peaks match directly or after shifting ``b`` by ``precursor_a - precursor_b``; when the shift is
    within ``tolerance`` only direct matches count. Same result as matchms
    ``ModifiedCosineGreedy(...).pair(a, b)``. Both spectra of every pair need a precursor m/z.
    """
    ia_, ib_ = _as_pairs(ia, ib)
    (a, ia_), (b, ib_) = _restrict(a, ia_), _restrict(b, ib_)
    return _cosine(a, b, ia_, ib_, tolerance, mz_power, intensity_power, modified=True)


def matched_peaks(a: Peaks, b: Peaks, ia: npt.ArrayLike, ib: npt.ArrayLike, *, tolerance: float = 0.1,
                  modified: bool = True) -> tuple[IntArray, IntArray, IntArray]:
    """The peak pairs the greedy (modified) cosine keeps: (pair index, flat peak of a, flat peak of b)."""
    ia_, ib_ = _as_pairs(ia, ib)
    pair, pa_, pb_, _, chosen = _greedy_edges(a, b, ia_, ib_, tolerance, 0.0, 1.0, modified)
    return pair[chosen], pa_[chosen], pb_[chosen]


# --------------------------------------------------------------------------------------------------
# Spectral entropy


@dataclass(frozen=True, slots=True)
class EntropyPeaks:
    """Spectra cleaned by ms_entropy and entropy-weighted, ready for :func:`entropy_similarity`."""

    peaks: Peaks
    tolerance_da: float


def prepare_entropy(peaks: Peaks, *, tolerance_da: float = 0.02, noise_threshold: float = 0.01,
                    precursor_removal_da: float | None = None, weighted: bool = True) -> EntropyPeaks:
    """Clean (ms_entropy ``clean_spectrum``: centroid within ``2 * tolerance_da``, drop peaks below
    ``noise_threshold`` of the base peak, sum to 1) and apply the entropy intensity weight.

    With ``precursor_removal_da`` peaks above ``precursor_mz - precursor_removal_da`` are removed, as
    Flash entropy search does (1.6 Da). Prepare library spectra once and reuse them; the result is kept
    with ``peaks`` (:meth:`Peaks.derived`), so the searches that share a chunk prepare it once.
    """
    key = ("entropy", tolerance_da, noise_threshold, precursor_removal_da, weighted)
    return peaks.derived(key, lambda: _prepare_entropy(peaks, tolerance_da, noise_threshold,
                                                       precursor_removal_da, weighted))


def _prepare_entropy(peaks: Peaks, tolerance_da: float, noise_threshold: float,
                     precursor_removal_da: float | None, weighted: bool) -> EntropyPeaks:
    from ms_entropy import clean_spectrum

    n = len(peaks)
    lengths = np.zeros(n, dtype=np.int64)
    mz_parts: list[npt.NDArray[np.float32]] = []
    in_parts: list[npt.NDArray[np.float32]] = []
    stack = np.stack([peaks.mz, peaks.intensity], axis=1).astype(np.float32)
    off = peaks.offsets
    for i in range(n):  # one C call per spectrum; the per-peak work is inside ms_entropy
        max_mz = -1.0
        if precursor_removal_da is not None and np.isfinite(peaks.precursor_mz[i]):
            max_mz = float(peaks.precursor_mz[i]) - precursor_removal_da
        cleaned = clean_spectrum(stack[off[i]:off[i + 1]], max_mz=max_mz, noise_threshold=noise_threshold,
                                 min_ms2_difference_in_da=2 * tolerance_da)
        lengths[i] = cleaned.shape[0]
        mz_parts.append(cleaned[:, 0])
        in_parts.append(cleaned[:, 1])
    offsets = offsets_of(lengths)
    mz = np.concatenate(mz_parts).astype(np.float64) if n else np.zeros(0)
    inten = np.concatenate(in_parts).astype(np.float64) if n else np.zeros(0)
    if weighted and inten.size:
        inten = _entropy_weight(inten, offsets)
    return EntropyPeaks(Peaks(mz, inten, offsets, peaks.precursor_mz.copy()), tolerance_da)


def _entropy_weight(inten: FloatArray, offsets: IntArray) -> FloatArray:
    """ms_entropy's weight: for spectral entropy S < 3, intensities ``I^(0.25 + 0.25 S)``, re-normalised."""
    n = offsets.shape[0] - 1
    lengths = np.diff(offsets)
    seg = np.repeat(np.arange(n), lengths)
    entropy = -np.bincount(seg, weights=inten * np.log(inten), minlength=n)
    weight = np.where(entropy < 3, 0.25 + 0.25 * entropy, 1.0)
    # ms_entropy works in float32; follow it so the scores agree to float32 precision.
    out = np.power(inten.astype(np.float32), weight[seg].astype(np.float32)).astype(np.float64)
    total = np.bincount(seg, weights=out, minlength=n)
    return np.where(entropy[seg] < 3, out / np.where(total[seg] > 0, total[seg], 1.0), inten)


def _f64(values: npt.NDArray[np.floating]) -> FloatArray:
    """``values`` as float64 (no copy when they are already; prepared peaks always are)."""
    return np.asarray(values, dtype=np.float64)


def _xlog2x(x: FloatArray) -> FloatArray:
    return x * np.log2(np.where(x > 0, x, 1.0))


def entropy_similarity(a: EntropyPeaks, b: EntropyPeaks, ia: npt.ArrayLike, ib: npt.ArrayLike
                       ) -> FloatArray:
    """Entropy similarity in 0..1 of pairs ``(a[ia[i]], b[ib[i]])`` of prepared spectra.

    Same result (to float32 precision) as ms_entropy ``calculate_entropy_similarity(a, b,
    ms2_tolerance_in_da)`` with the cleaning options given to :func:`prepare_entropy`.
    """
    if a.tolerance_da != b.tolerance_da:
        raise ValueError("both sides must be prepared with the same tolerance")
    from engine.queries.kernels import entropy_pairs

    ia_, ib_ = _as_pairs(ia, ib)
    (pa_set, ia_), (pb_set, ib_) = _restrict(a.peaks, ia_), _restrict(b.peaks, ib_)
    return entropy_pairs(pa_set.mz, _f64(pa_set.intensity), pa_set.offsets, pb_set.mz, _f64(pb_set.intensity),
                         pb_set.offsets, ia_, ib_, float(a.tolerance_da))


def entropy_similarity_reference(a: EntropyPeaks, b: EntropyPeaks, ia: npt.ArrayLike, ib: npt.ArrayLike
                                 ) -> FloatArray:
    """:func:`entropy_similarity` in plain numpy array operations (the reference for the compiled kernel)."""
    if a.tolerance_da != b.tolerance_da:
        raise ValueError("both sides must be prepared with the same tolerance")
    ia_, ib_ = _as_pairs(ia, ib)
    tol = a.tolerance_da
    (pa_set, ia_), (pb_set, ib_) = _restrict(a.peaks, ia_), _restrict(b.peaks, ib_)
    pair, pa_, pb_ = _find_peak_pairs(pa_set, pb_set, ia_, ib_, tol, np.zeros(ia_.shape[0]))
    # Cleaned peaks are >= 2 * tol apart, so a peak matches at most one other (ms_entropy merges
    # in one pass); on an exact tie keep the first partner of each peak, as its two-pointer walk does.
    keep = np.ones(pair.shape[0], dtype=bool)
    if pair.size:
        keep[1:] &= ~((pair[1:] == pair[:-1]) & (pa_[1:] == pa_[:-1]))
        order_b = np.lexsort((pa_, pb_, pair))
        dup_b = np.zeros(pair.shape[0], dtype=bool)
        sb = order_b[1:][(pair[order_b[1:]] == pair[order_b[:-1]]) & (pb_[order_b[1:]] == pb_[order_b[:-1]])]
        dup_b[sb] = True
        keep &= ~dup_b
    pair, pa_, pb_ = pair[keep], pa_[keep], pb_[keep]
    x, y = _f64(pa_set.intensity[pa_]), _f64(pb_set.intensity[pb_])
    gain = _xlog2x(x + y) - _xlog2x(x) - _xlog2x(y)
    return np.bincount(pair, weights=gain, minlength=ia_.shape[0]) / 2.0
