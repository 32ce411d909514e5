"""Every library row inside each query's precursor window, with its exact embedding cosine.

Identity search wants *all* library spectra of the query's ion mode inside a narrow precursor window
(typically a few to a few hundred). Partitions of the vector index keep their rows sorted by mass with
the raw vectors beside them, so the windows are contiguous slices: this module enumerates the
(query, row) pairs with ``searchsorted`` and scores exactly those pairs (one dot product per pair),
instead of a top-k over a dense block of scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.records import Tolerance
from indexes.vector_index import VectorIndex

IntArray = npt.NDArray[np.int64]


def as_vector_index(library: Any) -> VectorIndex:
    """The :class:`VectorIndex` of a library (``Library.index()``) or the index itself."""
    return library if isinstance(library, VectorIndex) else library.index()


def _expand(starts: IntArray, ends: IntArray) -> tuple[IntArray, IntArray]:
    counts = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(starts.shape[0], dtype=np.int64), counts)
    offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(starts, counts) + offset


def window_pairs(index: VectorIndex, embeddings: npt.NDArray[np.float32], precursor_mz: npt.ArrayLike,
                 ion_mode: Sequence[str | None], tolerance: Tolerance, *, min_quality: float | None = None
                 ) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
    """(query index, library row_id, cosine) for every library row of the query's ion mode whose mass is
    inside ``precursor_mz +- tolerance``; queries without precursor or ion mode get none."""
    q = np.asarray(embeddings, dtype=np.float32)
    prec = np.asarray(precursor_mz, dtype=np.float64)
    delta = prec * tolerance.value * 1e-6 if tolerance.unit == "ppm" else np.full(prec.shape, tolerance.value)
    lo, hi = prec - delta, prec + delta
    modes = np.asarray([m if m is not None else "" for m in ion_mode], dtype=object)
    out_q: list[IntArray] = []
    out_r: list[IntArray] = []
    out_s: list[npt.NDArray[np.float64]] = []
    for pid, entry in enumerate(index.manifest.partitions):
        if entry.n_rows == 0:
            continue
        sel = np.flatnonzero((modes == entry.ion_mode) & np.isfinite(prec) & (lo < entry.mass_hi)
                             & (hi >= entry.mass_lo))
        if sel.size == 0:
            continue
        part = index.partition(pid)
        mass = part.mass
        n_sorted = entry.n_sorted
        owner, pos = _expand(np.searchsorted(mass[:n_sorted], lo[sel], side="left").astype(np.int64),
                             np.searchsorted(mass[:n_sorted], hi[sel], side="right").astype(np.int64))
        if entry.n_rows > n_sorted:  # rows appended since the last build: sort the tail once
            tail_order = np.argsort(mass[n_sorted:], kind="stable")
            tail_mass = mass[n_sorted:][tail_order]
            t_owner, t_pos = _expand(np.searchsorted(tail_mass, lo[sel], side="left").astype(np.int64),
                                     np.searchsorted(tail_mass, hi[sel], side="right").astype(np.int64))
            owner = np.concatenate([owner, t_owner])
            pos = np.concatenate([pos, n_sorted + tail_order[t_pos]])
        if min_quality is not None and pos.size:
            ok = part.quality[pos] >= min_quality
            owner, pos = owner[ok], pos[ok]
        if pos.size == 0:
            continue
        qi = sel[owner]
        order = np.argsort(pos, kind="stable")  # read the memory-mapped vectors in file order
        vecs = np.asarray(part.vectors[pos[order]], dtype=np.float32)
        scores = np.empty(pos.shape[0], dtype=np.float64)
        scores[order] = np.einsum("ij,ij->i", q[qi[order]], vecs)
        out_q.append(qi)
        out_r.append(part.row_id[pos].astype(np.int64))
        out_s.append(scores)
    if not out_q:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_q), np.concatenate(out_r), np.concatenate(out_s)
