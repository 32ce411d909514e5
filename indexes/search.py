"""One search interface: top-k by cosine over a partitioned vector index, with optional filters.

``search(index, queries, top_k=10, mass=..., tolerance=Tolerance(10, "ppm"), ion_mode=..., min_quality=...)``
returns an Arrow table ``(query_index, rank, row_id, <key>, <mass>, score)``: rank 1 is best, scores
are exact cosines (IVF-PQ candidates are re-scored from the stored vectors), and queries with fewer
than ``top_k`` qualifying rows get fewer rows.

How filters keep top-k correct:

* **Ion mode** and the **mass window** first select the partitions that can hold a hit.
* Inside a partition, rows are sorted by mass, so a window is a contiguous slice. When the slice is
  small (at most ``max(exact_window_rows, n * sqrt(n_probe / nlist))`` rows, ``exact_window_rows`` =
  4096 by default; beyond that an IVF probe costs less than the scan) it is searched **exactly**:
  queries sorted by mass share blocks of vectors, so this is one matrix product per block. Windows of
  exact partitions are always searched exactly.
* Wider windows go through the IVF index in one batched search that over-fetches
  ``2 k / share`` candidates (``share`` = the smallest window's part of the partition, at most 1024)
  and keeps those inside the window. A query left with fewer than ``k`` hits is searched again with
  the IVF index restricted to its slice (``IDSelectorRange``), ``n_probe`` raised by the inverse of
  the slice's share so that as many valid rows are scanned as an unfiltered search would scan.
* **Minimum quality** and **excluded rows** (e.g. a library's decoys, for searches that want targets
  only) make one mask of allowed rows per partition: a mask on exact paths (a whole-partition exact
  search scores a compact copy of the allowed vectors, kept with the partition) and an
  ``IDSelectorBitmap`` (AND the range) in IVF.
* Rows appended since the last build (the unsorted tail) are always searched exactly under the filters.

``exact=True`` searches everything exactly (ground truth).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.records import Tolerance
from indexes.faiss_ivf import code_scores
from indexes.ground_truth import exact_knn, merge_topk, topk_rows
from indexes.vector_index import PartitionData, VectorIndex

BLOCK_MAX_QUERIES = 256
BLOCK_MIN_SCORES = 1 << 16
GATHER_MAX_WINDOW = 2048
GATHER_ROWS = 1 << 16
OVERFETCH_MAX = 1024
LOOP_MIN_WINDOW = 64
#: Largest compact copy of a partition's allowed vectors kept for exact whole-partition searches.
COMPACT_MAX_BYTES = 256 << 20
#: An IVF search probes at least enough lists to hold this many times ``top_k`` rows on average (a top-1000
#: search at the index's default 16 probes would otherwise read lists that hold fewer than 1000 rows).
PROBE_COVER = 4
_POS_BITS = 40
_POS_MASK = (1 << _POS_BITS) - 1

Scored = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def result_schema(key_column: str = "spectrum_id", mass_column: str = "precursor_mz") -> pa.Schema:
    """Schema of :func:`search` results."""
    return pa.schema([  # type: ignore[arg-type]
        pa.field("query_index", pa.int32(), nullable=False), pa.field("rank", pa.int16(), nullable=False),
        pa.field("row_id", pa.int64(), nullable=False), pa.field(key_column, pa.string()),
        pa.field(mass_column, pa.float64()), pa.field("score", pa.float32(), nullable=False),
    ])


def search(index: VectorIndex, queries: npt.NDArray[np.floating], *, top_k: int = 10,
           mass: npt.NDArray[np.floating] | Sequence[float] | None = None, tolerance: Tolerance | None = None,
           ion_mode: str | Sequence[str | None] | None = None, min_quality: float | None = None,
           n_probe: int | None = None, exact: bool = False,
           exclude_rows: npt.NDArray[np.int64] | None = None) -> pa.Table:
    """Top-``top_k`` rows of ``index`` by cosine for each query row of ``queries`` ``[n, dim]``.

    ``mass`` (one value per query: precursor m/z for spectrum libraries, neutral monoisotopic mass for
    molecule databases) with ``tolerance`` restricts hits to ``mass +- tolerance``; ``ion_mode`` (one
    for all queries or one per query; None = any) and ``min_quality`` restrict further; ``exclude_rows``
    (row ids) are never returned, and the ``top_k`` hits are found among the other rows. ``n_probe``
    overrides the index default; ``exact`` disables approximation.
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    q = _normalised(queries, index.dim)
    nq = q.shape[0]
    lo, hi = _windows(mass, tolerance, nq)
    modes = _modes(ion_mode, nq)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_h = np.full((nq, 0), -1, dtype=np.int64)
    for pid, entry in enumerate(index.manifest.partitions):
        if entry.n_rows == 0 or pid not in index.served:
            continue
        sel = np.ones(nq, dtype=bool)
        if modes is not None:
            sel &= modes == entry.ion_mode
        if lo is not None and hi is not None:
            sel &= (lo < entry.mass_hi) & (hi >= entry.mass_lo)
        qi = np.flatnonzero(sel)
        if qi.size == 0:
            continue
        part = index.partition(pid)
        allowed = _allowed(part, min_quality, exclude_rows)
        if allowed is not None and not allowed.any():
            continue
        if lo is not None and hi is not None:
            s, pos = _search_windows(part, q[qi], lo[qi], hi[qi], top_k, allowed=allowed,
                                     n_probe=n_probe, exact=exact, use_gpu=index.use_gpu)
        else:
            s, pos = _search_all(part, q[qi], top_k, allowed=allowed, n_probe=n_probe, exact=exact,
                                 use_gpu=index.use_gpu)
        full_s = np.full((nq, s.shape[1]), -np.inf, dtype=np.float32)
        full_h = np.full((nq, s.shape[1]), -1, dtype=np.int64)
        full_s[qi] = s
        full_h[qi] = np.where(pos >= 0, (np.int64(pid) << _POS_BITS) | pos, -1)
        best_s, best_h = merge_topk(best_s, best_h, full_s, full_h, top_k)
    return _to_arrow(index, best_s, best_h)


# ------------------------------------------------------------------------------------------- arguments

def _normalised(queries: npt.NDArray[np.floating], dim: int) -> npt.NDArray[np.float32]:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape [n, {dim}], got {q.shape}")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(q / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def _windows(mass: npt.NDArray[np.floating] | Sequence[float] | None, tolerance: Tolerance | None, nq: int
             ) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
    if mass is None and tolerance is None:
        return None, None
    if mass is None or tolerance is None:
        raise ValueError("a mass window needs both mass (one per query) and tolerance")
    m = np.asarray(mass, dtype=np.float64).reshape(-1)
    if m.shape[0] != nq:
        raise ValueError(f"{m.shape[0]} masses for {nq} queries")
    delta = m * tolerance.value * 1e-6 if tolerance.unit == "ppm" else np.full(nq, tolerance.value)
    lo, hi = m - delta, m + delta
    nan = ~np.isfinite(m)  # a query without a mass matches nothing
    lo[nan], hi[nan] = np.inf, -np.inf
    return lo, hi


def _modes(ion_mode: str | Sequence[str | None] | None, nq: int) -> npt.NDArray[np.object_] | None:
    if ion_mode is None:
        return None
    if isinstance(ion_mode, str):
        return np.full(nq, ion_mode, dtype=object)
    modes = np.asarray(list(ion_mode), dtype=object)
    if modes.shape[0] != nq:
        raise ValueError(f"{modes.shape[0]} ion modes for {nq} queries")
    return modes


# ------------------------------------------------------------------------------------------- partitions

def _allowed(part: PartitionData, min_quality: float | None, exclude_rows: npt.NDArray[np.int64] | None
             ) -> npt.NDArray[np.bool_] | None:
    """Which rows of ``part`` may be returned (None: all of them)."""
    mask = part.quality >= min_quality if min_quality is not None else None
    if exclude_rows is not None and len(exclude_rows):
        ids = np.ascontiguousarray(exclude_rows, dtype=np.int64)
        key = f"exclude:{ids.shape[0]}:{hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()}"
        if key not in part._cache:  # the same exclusion (a library's decoys) comes with every batch
            part._cache[key] = ~np.isin(part.row_id, ids)
        keep = part._cache[key]
        mask = keep if mask is None else mask & keep
    return None if mask is None or mask.all() else mask


def _compact(part: PartitionData, mask: npt.NDArray[np.bool_]
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The allowed vectors of ``part`` as one contiguous array and their positions, kept with the
    partition for the last mask asked (a job asks for the same one with every batch)."""
    key = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).hexdigest()
    cached = part._cache.get("compact")
    if cached is None or cached[0] != key:
        pos = np.flatnonzero(mask).astype(np.int64)
        cached = (key, np.ascontiguousarray(part.vectors[pos], dtype=np.float32), pos)
        part._cache["compact"] = cached
    return cached[1], cached[2]


def _empty(m: int, k: int) -> Scored:
    return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)


def _rescore(part: PartitionData, q: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], k: int) -> Scored:
    """Exact cosines of candidate ids (``-1`` = none) and the best ``k``; with scalar codes, only the
    best ``2 k`` by their decoded cosines are read from the float vectors."""
    if part.codes is not None and ids.shape[1] > 2 * k:
        safe = np.maximum(ids, 0)
        approx = code_scores(part.codes, q, safe)
        approx[ids < 0] = -np.inf
        _s, ids = topk_rows(approx, ids, 2 * k)
    safe = np.maximum(ids, 0)
    vecs = np.asarray(part.vectors[safe.reshape(-1)], dtype=np.float32).reshape(*ids.shape, -1)
    scores = np.einsum("qd,qkd->qk", q, vecs).astype(np.float32)
    scores[ids < 0] = -np.inf
    return topk_rows(scores, ids, k)


def _bitmap_selector(mask: npt.NDArray[np.bool_]) -> tuple[Any, npt.NDArray[np.uint8]]:
    import faiss

    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bits)), bits


def _ivf(part: PartitionData, q: npt.NDArray[np.float32], k: int, n_probe: int, selector: Any = None,
         use_gpu: bool = False, raw: bool = False) -> Scored:
    """IVF candidates (over-fetched and re-scored for IVF-PQ; ``raw``: the FAISS answer as is)."""
    from indexes.faiss_ivf import search_ivf

    refine = part.entry.kind == "ivf_pq" and not raw
    kk = k * (part.code_refine_factor if part.codes is not None else part.refine_factor) if refine else k
    if use_gpu and selector is None:
        import faiss

        if part.gpu_index is None:
            from indexes.faiss_ivf import to_gpu

            part.gpu_index = to_gpu(part.index)
        faiss.GpuParameterSpace().set_index_parameter(part.gpu_index, "nprobe", n_probe)
        s, ids = part.gpu_index.search(q, kk)
    else:
        s, ids = search_ivf(part.index, q, kk, n_probe=n_probe, selector=selector)
    ids = ids.astype(np.int64)
    if raw:
        return s.astype(np.float32), ids
    if refine:
        return _rescore(part, q, ids, k)
    s = np.where(ids >= 0, s, -np.inf).astype(np.float32)
    return topk_rows(s, ids, k)


def _search_all(part: PartitionData, q: npt.NDArray[np.float32], k: int, *, allowed: npt.NDArray[np.bool_] | None,
                n_probe: int | None, exact: bool, use_gpu: bool) -> Scored:
    """Top-k over a whole partition (no mass window) among the ``allowed`` rows."""
    entry = part.entry
    flat = exact or part.index is None
    probe = 0 if flat else _probe(part, n_probe, k)
    if allowed is None:
        return exact_knn(q, part.vectors, k, use_gpu=use_gpu) if flat else _ivf(part, q, k, probe, use_gpu=use_gpu)
    n_valid = int(allowed.sum())
    if flat or n_valid <= _exact_limit(part, probe):
        if n_valid * part.vectors.shape[1] * 4 > COMPACT_MAX_BYTES:  # too large to copy: stream it
            return exact_knn(q, part.vectors, k, mask=allowed, use_gpu=use_gpu)
        vectors, positions = _compact(part, allowed)
        s, i = exact_knn(q, vectors, k, use_gpu=use_gpu)
        return s, np.where(i >= 0, positions[np.maximum(i, 0)], -1)
    selector, _bits = _bitmap_selector(allowed)
    return _ivf(part, q, k, _scaled_probe(probe, entry.nlist, n_valid / entry.n_rows), selector)


def _probe(part: PartitionData, n_probe: int | None, k: int) -> int:
    """Lists to probe: the one asked for (else the index default), and enough that the probed lists hold
    about :data:`PROBE_COVER` x ``k`` rows."""
    entry = part.entry
    cover = math.ceil(PROBE_COVER * k * entry.nlist / max(entry.n_rows, 1))
    return int(min(max(n_probe if n_probe is not None else part.n_probe, cover, 1), entry.nlist))


def _scaled_probe(probe: int, nlist: int, fraction: float) -> int:
    return int(min(nlist, math.ceil(probe / max(fraction, 1e-9))))


def _exact_limit(part: PartitionData, probe: int) -> int:
    entry = part.entry
    return max(part.exact_window_rows, int(entry.n_rows * math.sqrt(probe / max(entry.nlist, 1))))


def _search_windows(part: PartitionData, q: npt.NDArray[np.float32], lo: npt.NDArray[np.float64],
                    hi: npt.NDArray[np.float64], k: int, *, allowed: npt.NDArray[np.bool_] | None,
                    n_probe: int | None, exact: bool, use_gpu: bool) -> Scored:
    """Top-k of each query among rows with mass in ``[lo, hi]`` (and ``allowed``)."""
    entry = part.entry
    sorted_mass = part.mass[:entry.n_sorted]
    a = np.searchsorted(sorted_mass, lo, side="left")
    b = np.searchsorted(sorted_mass, hi, side="right")
    b = np.maximum(a, b)
    out_s, out_i = _empty(q.shape[0], k)
    if exact or part.index is None:
        use_exact = np.ones(q.shape[0], dtype=bool)
        probe = 0
    else:
        probe = _probe(part, n_probe, k)
        use_exact = (b - a) <= _exact_limit(part, probe)
    narrow = np.flatnonzero(use_exact & ((b - a) <= GATHER_MAX_WINDOW))
    if narrow.size:
        out_s[narrow], out_i[narrow] = _gathered_windows(part, q[narrow], a[narrow], b[narrow], k,
                                                         allowed=allowed)
        if entry.n_rows > entry.n_sorted:
            ts, ti = _exact_windows(part, q[narrow], lo[narrow], hi[narrow], a[narrow], b[narrow], k,
                                    allowed=allowed, include_sorted=False)
            out_s[narrow], out_i[narrow] = merge_topk(out_s[narrow], out_i[narrow], ts, ti, k)
    ex = np.flatnonzero(use_exact & ((b - a) > GATHER_MAX_WINDOW))
    if ex.size:
        out_s[ex], out_i[ex] = _exact_windows(part, q[ex], lo[ex], hi[ex], a[ex], b[ex], k,
                                              allowed=allowed, include_sorted=True)
    iv = np.flatnonzero(~use_exact)
    if iv.size:
        # wide windows: one batched IVF search, over-fetched by the inverse window share, post-filtered
        frac = (b[iv] - a[iv]) / max(entry.n_sorted, 1)
        kk = int(min(OVERFETCH_MAX, math.ceil(2 * k / max(float(frac.min()), 1e-9))))
        cs, ci = _ivf(part, q[iv], kk, probe, use_gpu=use_gpu, raw=True)
        safe = np.maximum(ci, 0)
        cm = part.mass[safe]
        ok = (ci >= 0) & (cm >= lo[iv, None]) & (cm <= hi[iv, None])
        if allowed is not None:
            ok &= allowed[safe]
        cs = np.where(ok, cs, -np.inf).astype(np.float32)
        fs, fi = (_rescore(part, q[iv], np.where(ok, ci, -1), k) if entry.kind == "ivf_pq"
                  else topk_rows(cs, np.where(ok, ci, -1), k))
        out_s[iv], out_i[iv] = fs, fi
        short = iv[(fi < 0).any(axis=1) & (b[iv] - a[iv] >= k)]
        iv = short  # too few hits survived the filter: search these with a selector
    if iv.size:
        for j in iv:
            s, i = _ivf_window(part, q[j:j + 1], int(a[j]), int(b[j]), k, probe, allowed)
            out_s[j], out_i[j] = s[0], i[0]
        if entry.n_rows > entry.n_sorted:  # the unsorted tail is not covered by the range selector
            ts, ti = _exact_windows(part, q[iv], lo[iv], hi[iv], a[iv], b[iv], k, allowed=allowed,
                                    include_sorted=False)
            out_s[iv], out_i[iv] = merge_topk(out_s[iv], out_i[iv], ts, ti, k)
    return out_s, out_i


def _ivf_window(part: PartitionData, q: npt.NDArray[np.float32], a: int, b: int, k: int, probe: int,
                allowed: npt.NDArray[np.bool_] | None) -> Scored:
    import faiss

    entry = part.entry
    selector: Any = faiss.IDSelectorRange(a, b)
    keep: list[Any] = [selector]
    if allowed is not None:
        bitmap, bits = _bitmap_selector(allowed)
        keep += [bitmap, bits]
        selector = faiss.IDSelectorAnd(selector, bitmap)
    return _ivf(part, q, k, _scaled_probe(probe, entry.nlist, (b - a) / entry.n_rows), selector)


def _gathered_windows(part: PartitionData, q: npt.NDArray[np.float32], a: npt.NDArray[np.int64],
                      b: npt.NDArray[np.int64], k: int, *, allowed: npt.NDArray[np.bool_] | None) -> Scored:
    """Exact top-k over the sorted slices ``[a, b)``: every candidate row is scored once (no waste).

    Slices of more than ``LOOP_MIN_WINDOW`` rows are scored one query at a time (a matrix-vector
    product over a contiguous view); the smaller ones are gathered and scored together. Rows of a slice
    are inside the window by construction, so only ``allowed`` needs masking.
    """
    m = q.shape[0]
    out_s, out_i = _empty(m, k)
    counts = (b - a).astype(np.int64)
    for j in np.flatnonzero(counts > LOOP_MIN_WINDOW):  # larger slices: one BLAS product each, no copy
        lo_j, hi_j = int(a[j]), int(b[j])
        scores = np.asarray(part.vectors[lo_j:hi_j] @ q[j], dtype=np.float32)
        if allowed is not None:
            scores[~allowed[lo_j:hi_j]] = -np.inf
        s, i = topk_rows(scores[None, :], None, k)
        out_s[j], out_i[j] = s[0], np.where(i[0] >= 0, i[0] + lo_j, -1)
    counts = np.where(counts > LOOP_MIN_WINDOW, 0, counts)
    ends = np.cumsum(counts)
    start = 0
    while start < m:
        base = int(ends[start - 1]) if start else 0
        stop = int(min(m, max(start + 1, np.searchsorted(ends, base + GATHER_ROWS, side="right"))))
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            local = np.repeat(np.arange(start, stop), c)
            first = ends[start:stop] - c - base
            cand = np.arange(total, dtype=np.int64) - np.repeat(first, c) + np.repeat(a[start:stop], c)
            vecs = np.asarray(part.vectors[cand], dtype=np.float32)
            scores = np.einsum("ij,ij->i", vecs, q[local]).astype(np.float32)
            if allowed is not None:
                scores[~allowed[cand]] = -np.inf
            order = np.lexsort((cand, -scores, local))
            local, cand, scores = local[order], cand[order], scores[order]
            seg = np.r_[0, np.flatnonzero(local[1:] != local[:-1]) + 1]
            rank = np.arange(total) - np.repeat(seg, np.diff(np.r_[seg, total]))
            keep = (rank < k) & np.isfinite(scores)
            out_s[local[keep], rank[keep]] = scores[keep]
            out_i[local[keep], rank[keep]] = cand[keep]
        start = stop
    return out_s, out_i


def _exact_windows(part: PartitionData, q: npt.NDArray[np.float32], lo: npt.NDArray[np.float64],
                   hi: npt.NDArray[np.float64], a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], k: int, *,
                   allowed: npt.NDArray[np.bool_] | None, include_sorted: bool) -> Scored:
    """Exact windowed top-k; queries sorted by mass share one matrix product per block of candidates."""
    entry = part.entry
    mass = part.mass
    tail_mass = mass[entry.n_sorted:]
    m = q.shape[0]
    out_s, out_i = _empty(m, k)
    order = np.argsort(lo, kind="stable")
    j = 0
    while j < m:
        start = j
        first = order[j]
        lo_a, hi_b = int(a[first]), int(b[first])
        lo_min, hi_max = lo[first], hi[first]
        useful = int(b[first] - a[first])
        j += 1
        while j < m and j - start < BLOCK_MAX_QUERIES:
            o = order[j]
            na, nb = min(lo_a, int(a[o])), max(hi_b, int(b[o]))
            # grow the block while it scores at most twice the rows its queries need
            if (nb - na) * (j - start + 1) > max(2 * (useful + int(b[o] - a[o])), BLOCK_MIN_SCORES):
                break
            useful += int(b[o] - a[o])
            lo_a, hi_b = na, nb
            lo_min, hi_max = min(lo_min, lo[o]), max(hi_max, hi[o])
            j += 1
        block = order[start:j]
        parts_ids = []
        parts_vecs = []
        if include_sorted and hi_b > lo_a:
            parts_ids.append(np.arange(lo_a, hi_b, dtype=np.int64))
            parts_vecs.append(np.asarray(part.vectors[lo_a:hi_b], dtype=np.float32))
        if tail_mass.shape[0]:
            th = entry.n_sorted + np.flatnonzero((tail_mass >= lo_min) & (tail_mass <= hi_max))
            if th.size:
                parts_ids.append(th.astype(np.int64))
                parts_vecs.append(np.asarray(part.vectors[th], dtype=np.float32))
        if not parts_ids:
            continue
        cand = np.concatenate(parts_ids)
        vecs = np.concatenate(parts_vecs) if len(parts_vecs) > 1 else parts_vecs[0]
        scores = q[block] @ vecs.T
        cm = mass[cand]
        bad = (cm[None, :] < lo[block, None]) | (cm[None, :] > hi[block, None])
        if allowed is not None:
            bad |= ~allowed[cand][None, :]
        scores[bad] = -np.inf
        s, i = topk_rows(scores, np.broadcast_to(cand, scores.shape), k)
        out_s[block], out_i[block] = s, i
    return out_s, out_i


# ------------------------------------------------------------------------------------------- output

def _to_arrow(index: VectorIndex, scores: npt.NDArray[np.float32], handles: npt.NDArray[np.int64]) -> pa.Table:
    man = index.manifest
    schema = result_schema(man.key_column, man.mass_column)
    valid = handles >= 0
    qidx, rank = np.nonzero(valid)
    h = handles[valid]
    s = scores[valid]
    pid = h >> _POS_BITS
    pos = h & _POS_MASK
    n = h.shape[0]
    row_id = np.empty(n, dtype=np.int64)
    mass = np.empty(n, dtype=np.float64)
    key_chunks: list[pa.Array] = []
    key_where: list[npt.NDArray[np.int64]] = []
    for p in np.unique(pid):
        idx = np.flatnonzero(pid == p)
        part = index.partition(int(p))
        row_id[idx] = part.row_id[pos[idx]]
        mass[idx] = part.mass[pos[idx]]
        key_chunks.append(part.keys(pos[idx]))
        key_where.append(idx)
    if key_chunks:
        keys = pa.concat_arrays(key_chunks)
        inverse = np.empty(n, dtype=np.int64)
        inverse[np.concatenate(key_where)] = np.arange(n)
        keys = keys.take(inverse)
    else:
        keys = pa.array([], pa.string())
    return pa.Table.from_arrays([
        pa.array(qidx.astype(np.int32)), pa.array((rank + 1).astype(np.int16)), pa.array(row_id),
        keys.cast(pa.string()), pa.array(mass), pa.array(s.astype(np.float32)),
    ], schema=schema)
