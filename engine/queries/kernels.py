"""Compiled per-pair kernels for exact spectral similarity (numba, parallel over pairs).

The vectorised numpy code in :mod:`engine.queries.similarity` states the algorithms (matchms'
greedy cosines, ms_entropy's entropy similarity) and stays the reference the tests compare against;
these kernels compute the same numbers pair by pair with a two-pointer walk over the m/z-sorted peaks,
which needs no intermediate edge arrays and runs about ten times faster on the short candidate lists
of library and analogue search. :func:`pair_dots` does the same for embedding dot products (the
analogue feature ``structure_embedding_cosine``).
:func:`cut_piece_masses` weighs the pieces of a molecule after each set of bond cleavages, and
:func:`fragment_pair_evidence` scores (spectrum, candidate) pairs against in-silico fragment ions
(:mod:`engine.queries.fragments`).

All arrays are CSR packed as in :class:`~engine.core.peaks.Peaks`: peaks of spectrum ``i``
are ``offsets[i]:offsets[i + 1]``, m/z sorted within each spectrum. Compiled code is cached on disk
next to this module (``cache=True``) when the directory is writable.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit, prange

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@njit(cache=True, nogil=True)
def _edges(mz_a: FloatArray, sa: int, ea: int, mz_b: FloatArray, sb: int, eb: int, tol: float, shift: float,
           out_a: IntArray, out_b: IntArray, start: int, write: bool) -> int:
    """Count (and with ``write`` store from ``start``, as local peak indices) the peak pairs with
    ``mz_a - tol <= mz_b + shift <= mz_a + tol`` (matchms' test), ordered by peak of a, then of b."""
    k = start
    lo = sb
    for i in range(sa, ea):
        low, high = mz_a[i] - tol, mz_a[i] + tol
        while lo < eb and mz_b[lo] + shift < low:
            lo += 1
        j = lo
        while j < eb and mz_b[j] + shift <= high:
            if write:
                out_a[k] = i - sa
                out_b[k] = j - sb
            k += 1
            j += 1
    return k - start


@njit(cache=True, nogil=True)
def _edge_list(mz_a: FloatArray, sa: int, ea: int, mz_b: FloatArray, sb: int, eb: int, tol: float,
               shifts: FloatArray) -> tuple[IntArray, IntArray]:
    """The edges of :func:`_edges` for each shift in turn (matchms concatenates direct, then shifted)."""
    none = np.empty(0, dtype=np.int64)
    n = 0
    for s in shifts:
        n += _edges(mz_a, sa, ea, mz_b, sb, eb, tol, s, none, none, 0, False)
    out_a = np.empty(n, dtype=np.int64)
    out_b = np.empty(n, dtype=np.int64)
    k = 0
    for s in shifts:
        k += _edges(mz_a, sa, ea, mz_b, sb, eb, tol, s, out_a, out_b, k, True)
    return out_a, out_b


@njit(cache=True, nogil=True)
def _greedy_pair(mz_a: FloatArray, w_a: FloatArray, sa: int, ea: int, mz_b: FloatArray, w_b: FloatArray,
                 sb: int, eb: int, tol: float, shift: float, use_shift: bool) -> tuple[float, int]:
    """matchms' greedy (modified) cosine numerator and match count of one pair."""
    shifts = np.array([0.0, shift]) if use_shift else np.array([0.0])
    ea_, eb_ = _edge_list(mz_a, sa, ea, mz_b, sb, eb, tol, shifts)
    n = ea_.shape[0]
    if n == 0:
        return 0.0, 0
    weight = np.empty(n)
    for e in range(n):
        weight[e] = w_a[sa + ea_[e]] * w_b[sb + eb_[e]]
    # matchms: stable sort by weight ascending, then reversed (ties: the later edge first)
    order = np.argsort(weight, kind="mergesort")
    used_a = np.zeros(ea - sa, dtype=np.bool_)
    used_b = np.zeros(eb - sb, dtype=np.bool_)
    total = 0.0
    matches = 0
    for r in range(n - 1, -1, -1):
        e = order[r]
        pa, pb = ea_[e], eb_[e]
        if not used_a[pa] and not used_b[pb]:
            used_a[pa] = True
            used_b[pb] = True
            total += weight[e]
            matches += 1
    return total, matches


@njit(cache=True, parallel=True, nogil=True)
def greedy_cosine_pairs(mz_a: FloatArray, w_a: FloatArray, off_a: IntArray, mz_b: FloatArray, w_b: FloatArray,
                        off_b: IntArray, ia: IntArray, ib: IntArray, shift: FloatArray,
                        use_shift: npt.NDArray[np.bool_], tol: float) -> tuple[FloatArray, IntArray]:
    """Greedy cosine numerators (sum of matched weight products) and match counts of pairs ``(ia, ib)``.

    ``w_*`` are the peak weights ``mz ** mz_power * intensity ** intensity_power``; where ``use_shift``,
    peaks also match after shifting ``b`` by ``shift`` (the modified cosine).
    """
    n = ia.shape[0]
    total = np.zeros(n)
    matches = np.zeros(n, dtype=np.int64)
    for p in prange(n):
        a, b = ia[p], ib[p]
        t, m = _greedy_pair(mz_a, w_a, off_a[a], off_a[a + 1], mz_b, w_b, off_b[b], off_b[b + 1], tol,
                            shift[p], use_shift[p])
        total[p] = t
        matches[p] = m
    return total, matches


@njit(cache=True, nogil=True)
def _xlog2x(x: float) -> float:
    return x * math.log2(x) if x > 0 else 0.0


@njit(cache=True, nogil=True)
def _entropy_pair(mz_a: FloatArray, in_a: FloatArray, sa: int, ea: int, mz_b: FloatArray, in_b: FloatArray,
                  sb: int, eb: int, tol: float) -> float:
    """Entropy similarity of one pair of cleaned, entropy-weighted spectra.

    A matched edge counts when it is the first partner of both its peaks (ms_entropy's one-pass merge
    on the exact ties that peaks cleaned ``2 * tol`` apart still allow).
    """
    pa, pb = _edge_list(mz_a, sa, ea, mz_b, sb, eb, tol, np.zeros(1))
    n = pa.shape[0]
    if n == 0:
        return 0.0
    first_b = np.full(ea - sa, -1, dtype=np.int64)
    first_a = np.full(eb - sb, -1, dtype=np.int64)
    for e in range(n):  # edges come ordered by (peak of a, peak of b)
        if first_b[pa[e]] < 0:
            first_b[pa[e]] = pb[e]
        if first_a[pb[e]] < 0 or pa[e] < first_a[pb[e]]:
            first_a[pb[e]] = pa[e]
    gain = 0.0
    for e in range(n):
        if first_b[pa[e]] == pb[e] and first_a[pb[e]] == pa[e]:
            x, y = in_a[sa + pa[e]], in_b[sb + pb[e]]
            gain += _xlog2x(x + y) - _xlog2x(x) - _xlog2x(y)
    return gain / 2.0


@njit(cache=True, parallel=True, nogil=True)
def entropy_pairs(mz_a: FloatArray, in_a: FloatArray, off_a: IntArray, mz_b: FloatArray, in_b: FloatArray,
                  off_b: IntArray, ia: IntArray, ib: IntArray, tol: float) -> FloatArray:
    """Entropy similarity of pairs ``(ia, ib)`` of prepared spectra (see :func:`_entropy_pair`)."""
    n = ia.shape[0]
    out = np.zeros(n)
    for p in prange(n):
        a, b = ia[p], ib[p]
        out[p] = _entropy_pair(mz_a, in_a, off_a[a], off_a[a + 1], mz_b, in_b, off_b[b], off_b[b + 1], tol)
    return out


@njit(cache=True, parallel=True, nogil=True)
def pair_dots(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], ia: IntArray, ib: IntArray) -> FloatArray:
    """Dot products ``a[ia[p]] . b[ib[p]]`` of row pairs (no gathered copies of the rows)."""
    n = ia.shape[0]
    out = np.zeros(n)
    for p in prange(n):
        x, y = a[ia[p]], b[ib[p]]
        total = 0.0
        for k in range(x.shape[0]):
            total += x[k] * y[k]
        out[p] = total
    return out


@njit(cache=True, nogil=True)
def _root(parent: IntArray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def cut_piece_masses(masses: FloatArray, ends: IntArray, cut: npt.NDArray[np.bool_]) -> FloatArray:
    """Mass ``[set, label]`` of every piece of a molecular graph with bonds ``ends`` left by removing the
    bonds of each row of ``cut`` (union-find per cut set; label = the piece's smallest atom index, zero
    where no piece has that label)."""
    n_sets, n_bonds = cut.shape
    n_atoms = masses.shape[0]
    out = np.zeros((n_sets, n_atoms))
    parent = np.empty(n_atoms, np.int64)
    for p in range(n_sets):
        for i in range(n_atoms):
            parent[i] = i
        for e in range(n_bonds):
            if cut[p, e]:
                continue
            a = _root(parent, ends[e, 0])
            b = _root(parent, ends[e, 1])
            if a < b:
                parent[b] = a
            elif b < a:
                parent[a] = b
        for i in range(n_atoms):
            out[p, _root(parent, i)] += masses[i]
    return out

@njit(cache=True, nogil=True)
def _tolerance(mz: float, ppm: float, da: float) -> float:
    return max(mz * ppm * 1e-6, da)


@njit(cache=True, parallel=True, nogil=True)
def fragment_pair_evidence(peak_mz: FloatArray, peak_w: FloatArray, peak_off: IntArray, found: FloatArray,
                           found_off: IntArray, lower: FloatArray, upper: FloatArray, ion_mz: FloatArray,
                           ion_w: FloatArray, ion_off: IntArray, rec_ions: FloatArray, rec_w: FloatArray,
                           rec_off: IntArray, pair_q: IntArray, pair_t: IntArray, ppm: float, da: float
                           ) -> tuple[FloatArray, FloatArray]:
    """Explained share and predicted recall of every (query ``pair_q[p]``, candidate table ``pair_t[p]``)
    pair, as :func:`engine.queries.fragments.explained_share` and
    :func:`~engine.queries.fragments.predicted_recall_of` compute them for one pair.

    Queries are CSR packed: peaks ``peak_mz`` / ``peak_w`` (weights, zero in the precursor region) by
    ``peak_off``, the sorted explainable m/z values ``found`` by ``found_off``, and the fragment window
    ``[lower, upper)``. Candidate tables likewise: sorted explanation ions ``ion_mz`` / ``ion_w`` by
    ``ion_off``, recall fragments ``rec_w`` by ``rec_off`` with their 3 ions each in ``rec_ions`` (flat:
    fragment ``r``'s ions are ``rec_ions[3 * r:3 * r + 3]``).
    """
    n = pair_q.shape[0]
    share = np.zeros(n)
    recall = np.zeros(n)
    for p in prange(n):
        q, t = pair_q[p], pair_t[p]
        ia, ib = ion_off[t], ion_off[t + 1]
        total = 0.0
        explained = 0.0
        if ib > ia:
            ions = ion_mz[ia:ib]
            for j in range(peak_off[q], peak_off[q + 1]):
                w = peak_w[j]
                total += w
                if w <= 0.0:
                    continue
                tol = _tolerance(peak_mz[j], ppm, da)
                lo = np.searchsorted(ions, peak_mz[j] - tol, side="left")
                hi = np.searchsorted(ions, peak_mz[j] + tol, side="right")
                best = 0.0
                for k in range(lo, hi):
                    if ion_w[ia + k] > best:
                        best = ion_w[ia + k]
                explained += best * w
        share[p] = explained / total if total > 0.0 else 0.0
        fa, fb = found_off[q], found_off[q + 1]
        if fb == fa or rec_off[t + 1] == rec_off[t]:
            continue
        seen_mz = found[fa:fb]
        last = fb - fa - 1
        weight_in = 0.0
        weight_seen = 0.0
        for r in range(rec_off[t], rec_off[t + 1]):
            inside = False
            seen = False
            for c in range(3):
                ion = rec_ions[3 * r + c]
                if lower[q] <= ion < upper[q]:
                    inside = True
                pos = np.searchsorted(seen_mz, ion)
                gap = min(abs(seen_mz[min(max(pos - 1, 0), last)] - ion), abs(seen_mz[min(pos, last)] - ion))
                if gap <= _tolerance(ion, ppm, da):
                    seen = True
            if inside:
                weight_in += rec_w[r]
                if seen:
                    weight_seen += rec_w[r]
        recall[p] = weight_seen / weight_in if weight_in > 0.0 else 0.0
    return share, recall
