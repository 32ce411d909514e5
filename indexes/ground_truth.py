"""Exact k-nearest neighbours by inner product, block by block over the database, and recall@k.

The database may be a memory-mapped array larger than RAM: it is read ``block_rows`` rows at a time
and a running top-k is merged after each block (as ``faiss.contrib.exhaustive_search`` does). On the CPU
each block is one matrix product and a top-k in torch (MKL / oneDNN), tiled over the queries: about twice
as fast as ``faiss.knn`` with the BLAS of the faiss-cpu wheels; ``faiss.knn`` serves where torch is missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt


def merge_topk(scores_a: npt.NDArray[np.float32], ids_a: npt.NDArray[np.int64],
               scores_b: npt.NDArray[np.float32], ids_b: npt.NDArray[np.int64], top_k: int
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Merge two per-query candidate lists (rows = queries) into the best ``top_k``, sorted descending.

    Missing entries are ``-inf`` scores with id ``-1``.
    """
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    return topk_rows(scores, ids, top_k)


def topk_rows(scores: npt.NDArray[np.float32], ids: npt.NDArray[np.int64] | None, top_k: int
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Best ``top_k`` of every row of ``scores`` (ties broken by lower id), padded with ``-inf``/``-1``."""
    nq, m = scores.shape
    if ids is None:
        ids = np.broadcast_to(np.arange(m, dtype=np.int64), (nq, m))
    if m > top_k:
        part = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
        scores = np.take_along_axis(scores, part, axis=1)
        ids = np.take_along_axis(ids, part, axis=1)
    order = np.lexsort((ids, -scores), axis=1) if scores.shape[1] else np.zeros((nq, 0), np.int64)
    scores = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
    ids = np.take_along_axis(ids, order, axis=1).astype(np.int64, copy=False)
    ids = np.where(np.isfinite(scores), ids, -1)
    if scores.shape[1] < top_k:
        pad = top_k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return scores, ids


def exact_knn(queries: npt.NDArray[np.float32], database: npt.NDArray[np.float32], top_k: int, *,
              block_rows: int = 262_144, mask: npt.NDArray[np.bool_] | None = None,
              progress: Callable[[int], None] | None = None, use_gpu: bool | None = None
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Exact top-k by inner product of every query over ``database`` rows (optionally only where ``mask``).

    Returns ``(scores [nq, top_k], ids [nq, top_k])`` sorted by descending score; ids are row positions,
    ``-1`` where fewer than ``top_k`` rows qualify.
    """
    import faiss

    from indexes.faiss_ivf import gpu_count

    q = np.ascontiguousarray(queries, dtype=np.float32)
    nq = q.shape[0]
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.full((nq, 0), -1, dtype=np.int64)
    use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
    res = faiss.StandardGpuResources() if use_gpu else None
    for start in range(0, database.shape[0] if nq else 0, block_rows):
        block = np.ascontiguousarray(database[start:start + block_rows], dtype=np.float32)
        ids = np.arange(start, start + block.shape[0], dtype=np.int64)
        if mask is not None:
            keep = mask[start:start + block.shape[0]]
            block, ids = block[keep], ids[keep]
        if block.shape[0]:
            kk = min(top_k, block.shape[0])
            if res is not None:
                s, i = faiss.knn_gpu(res, q, block, kk, metric=faiss.METRIC_INNER_PRODUCT)
            else:
                s, i = knn_cpu(q, block, kk)
            i = np.where(i >= 0, ids[np.maximum(i, 0)], -1)
            best_s, best_i = merge_topk(best_s, best_i, s, i, top_k)
        if progress is not None:
            progress(min(block_rows, database.shape[0] - start))
    return topk_rows(best_s, best_i, top_k)


#: Scores held at once by :func:`knn_cpu` (queries per tile = this / database rows): 256 MB of float32.
KNN_TILE_SCORES = 1 << 26


def knn_cpu(queries: npt.NDArray[np.float32], database: npt.NDArray[np.float32], top_k: int, *,
            tile_scores: int = KNN_TILE_SCORES) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Exact top-k by inner product on the CPU (``top_k <= len(database)``), as ``faiss.knn`` gives it (the
    caller orders ties, see :func:`topk_rows`); queries in tiles of at most ``tile_scores`` scores."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; faiss alone still works
        import faiss

        s, i = faiss.knn(queries, database, top_k, metric=faiss.METRIC_INNER_PRODUCT)
        return s, i.astype(np.int64)
    n, nq = database.shape[0], queries.shape[0]
    scores = np.empty((nq, top_k), np.float32)
    ids = np.empty((nq, top_k), np.int64)
    tile = max(1, tile_scores // max(n, 1))
    with torch.inference_mode(), warnings.catch_warnings():
        # a memory-mapped database is read-only; torch only reads it here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        db = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32))
        for a in range(0, nq, tile):
            block = torch.from_numpy(np.ascontiguousarray(queries[a:a + tile], dtype=np.float32)) @ db.T
            v, pos = torch.topk(block, top_k, dim=1)
            scores[a:a + tile] = v.numpy()
            ids[a:a + tile] = pos.numpy()
    return scores, ids


def recall_at_k(found_ids: npt.NDArray[np.int64], true_ids: npt.NDArray[np.int64], k: int, *,
                found_scores: npt.NDArray[np.float32] | None = None,
                true_scores: npt.NDArray[np.float32] | None = None, tie_tolerance: float = 1e-5) -> float:
    """Mean over queries of ``|found[:k] ∩ true[:k]| / |true[:k]|`` (``-1`` entries ignored).

    With ``found_scores`` (exact scores of the found ids) and ``true_scores``, a found row whose score
    ties the k-th true score (within ``tie_tolerance``) counts as a hit: duplicate spectra give equal
    vectors, and which of them exact search lists is arbitrary.
    """
    hits = 0
    total = 0
    for q, (f, t) in enumerate(zip(found_ids[:, :k], true_ids[:, :k], strict=True)):
        truth = set(t[t >= 0].tolist())
        total += len(truth)
        if found_scores is not None and true_scores is not None and truth:
            kth = float(true_scores[q, :k][t >= 0].min())
            fs = found_scores[q, :k]
            good = sum(1 for i, s in zip(f.tolist(), fs.tolist(), strict=True)
                       if i >= 0 and (i in truth or s >= kth - tie_tolerance))
            hits += min(good, len(truth))
        else:
            hits += len(truth.intersection(f[f >= 0].tolist()))
    return hits / total if total else 1.0
