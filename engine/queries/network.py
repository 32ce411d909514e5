"""Molecular networks from spectrum embeddings: k-NN candidates, GNPS-style pruning, components, propagation.

The steps, each a function over plain arrays (node ``i`` is row ``i`` of the job's embedding matrix):

1. :func:`knn_candidates`: for every query node its ``top_k`` nearest target nodes by *calibrated
   predicted Tanimoto* (:mod:`engine.models.tanimoto_map`), from FAISS inner-product search over one
   index per ion mode, queried in batches (memory stays ``O(batch * k)``; no all-pairs matrix). A query
   searches the index of its own mode and, with ``cross_mode``, the other mode's; each search is one
   mode pairing, so ranking by cosine inside it equals ranking by predicted Tanimoto, and the merged list
   is ordered by (predicted Tanimoto, cosine) descending, then node id. Cosines of the retrieved pairs
   are recomputed pair by pair, so a pair scores the same whichever batch found it. Target sets up to
   ``exact_max_rows`` per mode are searched exactly (flat index); larger ones with IVF-Flat (approximate:
   see ``benchmarks/network`` for its recall).
2. :func:`network_edges`: GNPS's rule: an edge ``a - b`` is kept when its score reaches ``min_score`` and
   each node is among the other's ``top_k`` candidates.
3. :func:`split_components`: components larger than ``max_size`` are split as GNPS does, by raising the
   score threshold inside them (the lowest edges of an oversized component are removed until it falls
   apart; pieces still too large are split again; pieces small enough keep all their edges).
4. :func:`components`: component index (1 = largest; -1 for a node without edges, as GNPS writes it)
   and size of every node.
5. :func:`propagate_annotations`: a node without a library annotation takes the best one among its
   neighbours; reliability = edge predicted Tanimoto x the neighbour's annotation probability.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from engine.core.peaks import Peaks
from engine.models.tanimoto_map import TanimotoMap
from engine.queries.kernels import pair_dots
from engine.queries.similarity import cosine_greedy, entropy_similarity, modified_cosine, prepare_entropy

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Extra neighbours fetched from FAISS per search (self matches and near-ties at the k-th place).
MARGIN = 4


@dataclass(frozen=True, slots=True)
class Candidates:
    """Directed candidate edges: ``target[i]`` is among the ``top_k`` neighbours of ``source[i]``."""

    source: IntArray
    target: IntArray
    cosine: FloatArray
    score: FloatArray

    def __len__(self) -> int:
        return int(self.source.shape[0])

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                          np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        if not parts:
            return Candidates.empty()
        return Candidates(np.concatenate([p.source for p in parts]), np.concatenate([p.target for p in parts]),
                          np.concatenate([p.cosine for p in parts]), np.concatenate([p.score for p in parts]))

    def take(self, rows: npt.ArrayLike) -> Candidates:
        r = np.asarray(rows)
        return Candidates(self.source[r], self.target[r], self.cosine[r], self.score[r])


def predicted_scores(cosine: npt.NDArray[np.floating], positive_a: BoolArray, positive_b: BoolArray,
                     tmap: TanimotoMap | None) -> FloatArray:
    """Calibrated predicted Tanimoto of pairs (the clipped cosine without a map for the model)."""
    if tmap is None:
        return np.clip(cosine, 0.0, 1.0).astype(np.float32)
    pairing = np.where(positive_a != positive_b, 2, np.where(positive_a, 0, 1))
    return tmap.apply(cosine, pairing)


def top_k_per_source(c: Candidates, top_k: int) -> Candidates:
    """The best ``top_k`` rows per source, ordered by (score, cosine) descending then target; repeated
    (source, target) rows and self pairs are dropped."""
    if len(c) == 0:
        return c
    keep = c.source != c.target
    c = c.take(np.flatnonzero(keep))
    order = np.lexsort((c.target, -c.cosine.astype(np.float64), -c.score.astype(np.float64), c.source))
    c = c.take(order)
    dup = np.zeros(len(c), dtype=bool)
    dup[1:] = (c.source[1:] == c.source[:-1]) & (c.target[1:] == c.target[:-1])
    c = c.take(np.flatnonzero(~dup))
    start = np.flatnonzero(np.r_[True, c.source[1:] != c.source[:-1]])
    counts = np.diff(np.r_[start, len(c)])
    rank = np.arange(len(c)) - np.repeat(start, counts)
    return c.take(np.flatnonzero(rank < top_k))


def ivf_nlist(n_rows: int) -> int:
    """Inverted lists of the approximate index: the power of two nearest ``2 sqrt(n)``, within 64..2048."""
    return int(min(2048, max(64, 2 ** round(math.log2(2 * math.sqrt(max(n_rows, 1)))))))


def _index(vectors: FloatArray, exact_max_rows: int, n_probe: int) -> tuple[object, int]:
    """A FAISS inner-product index over ``vectors``: flat (exact) up to ``exact_max_rows`` rows, else
    IVF-Flat with :func:`ivf_nlist` lists, k-means (10 iterations, seed 0) on 39 rows per list."""
    import faiss

    n, dim = vectors.shape
    if n <= exact_max_rows:
        index = faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index, 0
    nlist = ivf_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = 10
    ivf.cp.seed = 0
    sample = np.random.default_rng(0).choice(n, size=min(n, 39 * nlist), replace=False)
    ivf.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    for start in range(0, n, 65_536):
        ivf.add(np.ascontiguousarray(vectors[start:start + 65_536], dtype=np.float32))
    ivf.nprobe = min(n_probe, nlist)
    return ivf, 1


def knn_candidates(emb: FloatArray, positive: BoolArray, queries: IntArray, targets: IntArray, *, top_k: int,
                   cross_mode: bool, tmap: TanimotoMap | None, batch_rows: int = 8192,
                   exact_max_rows: int = 50_000, n_probe: int = 16) -> Candidates:
    """The ``top_k`` best target nodes of each query node (see the module docstring).

    ``emb`` holds unit-length embeddings of all nodes, ``positive`` their ion mode; ``queries`` and
    ``targets`` are node ids (rows). Self pairs are excluded.
    """
    queries = np.asarray(queries, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if queries.size == 0 or targets.size == 0 or top_k < 1:
        return Candidates.empty()
    parts: list[Candidates] = []
    for target_mode in (True, False):
        rows = targets[positive[targets] == target_mode]
        if rows.size == 0:
            continue
        q_rows = queries if cross_mode else queries[positive[queries] == target_mode]
        if q_rows.size == 0:
            continue
        index, approximate = _index(emb[rows], exact_max_rows, n_probe)
        if approximate:
            log.info("%d %s target nodes: approximate (IVF) neighbour search", rows.size,
                     "positive" if target_mode else "negative")
        k = min(top_k + MARGIN, rows.size)
        for start in range(0, q_rows.size, batch_rows):
            q = q_rows[start:start + batch_rows]
            _, found = index.search(np.ascontiguousarray(emb[q], dtype=np.float32), k)  # type: ignore[attr-defined]
            valid = found >= 0
            src = np.repeat(q, k)[valid.ravel()]
            tgt = rows[found[valid]]
            cos = pair_dots(emb, emb, src, tgt).astype(np.float32)
            score = predicted_scores(cos, positive[src], positive[tgt], tmap)
            parts.append(top_k_per_source(Candidates(src, tgt, cos, score), top_k))
    return top_k_per_source(Candidates.concat(parts), top_k)


def merge_candidates(old: Candidates, new: Candidates, top_k: int) -> Candidates:
    """Union of two candidate lists cut back to ``top_k`` per source (incremental growth)."""
    return top_k_per_source(Candidates.concat([old, new]), top_k)


@dataclass(frozen=True, slots=True)
class Edges:
    """Undirected edges ``source < target`` with their cosine and score (predicted Tanimoto)."""

    source: IntArray
    target: IntArray
    cosine: FloatArray
    score: FloatArray

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def take(self, rows: npt.ArrayLike) -> Edges:
        r = np.asarray(rows)
        return Edges(self.source[r], self.target[r], self.cosine[r], self.score[r])


def network_edges(c: Candidates, *, min_score: float, mutual: bool = True) -> Edges:
    """Edges whose score reaches ``min_score`` and whose nodes are in each other's candidate lists
    (``mutual=False``: in either list), ordered by (source, target)."""
    sel = np.flatnonzero(c.score >= min_score)
    c = c.take(sel)
    a = np.minimum(c.source, c.target)
    b = np.maximum(c.source, c.target)
    order = np.lexsort((b, a))
    a, b, cos, score = a[order], b[order], c.cosine[order], c.score[order]
    first = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])] if a.size else np.zeros(0, bool)
    start = np.flatnonzero(first)
    counts = np.diff(np.r_[start, a.size])
    keep = start[counts >= 2] if mutual else start
    return Edges(a[keep], b[keep], cos[keep], score[keep])


@njit(cache=True)
def _find(parent: IntArray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True)
def _split_kernel(n: int, src: IntArray, tgt: IntArray, order: IntArray, score: npt.NDArray[np.float64],
                  max_size: int) -> BoolArray:
    """Edges kept after splitting oversized components (see :func:`split_components`).

    Edges are processed by descending score in groups of equal score. ``full`` joins everything;
    ``small`` joins only while the joined cluster stays within ``max_size``. When a group makes a
    cluster larger than ``max_size``, the small clusters it swallows are frozen with that score as their
    threshold: inside a frozen cluster only edges scoring above it survive.
    """
    full = np.arange(n)
    small = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    frozen = np.zeros(n, dtype=np.bool_)
    threshold = np.full(n, -np.inf)
    m = order.shape[0]
    g = 0
    while g < m:
        h = g
        w = score[order[g]]
        while h < m and score[order[h]] == w:
            h += 1
        for e in range(g, h):
            ra, rb = _find(full, src[order[e]]), _find(full, tgt[order[e]])
            if ra != rb:
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                full[rb] = ra
                size[ra] += size[rb]
        for e in range(g, h):
            u, v = src[order[e]], tgt[order[e]]
            su, sv = _find(small, u), _find(small, v)
            if size[_find(full, u)] <= max_size:
                if su != sv:
                    small[sv] = su
            else:
                for s in (su, sv):
                    if not frozen[s]:
                        frozen[s] = True
                        threshold[s] = w
        g = h
    keep = np.zeros(src.shape[0], dtype=np.bool_)
    for e in range(src.shape[0]):
        su = _find(small, src[e])
        if su == _find(small, tgt[e]) and score[e] > threshold[su]:
            keep[e] = True
    return keep


def split_components(n_nodes: int, edges: Edges, max_size: int) -> Edges:
    """Drop the edges that GNPS's component size limit removes (``max_size`` < 1: no limit)."""
    if max_size < 1 or len(edges) == 0:
        return edges
    score = edges.score.astype(np.float64)
    order = np.lexsort((edges.target, edges.source, -score)).astype(np.int64)
    keep = _split_kernel(n_nodes, edges.source, edges.target, order, score, int(max_size))
    return edges.take(np.flatnonzero(keep))


def components(n_nodes: int, edges: Edges) -> tuple[IntArray, IntArray]:
    """Component index per node (1 = largest, ties by smallest node id; -1 = no edge) and component size."""
    parent = np.arange(n_nodes, dtype=np.int64)
    roots = _union_all(parent, edges.source, edges.target)
    size = np.bincount(roots, minlength=n_nodes)
    node_size = size[roots]
    first = np.full(n_nodes, n_nodes, dtype=np.int64)
    np.minimum.at(first, roots, np.arange(n_nodes))
    multi = np.flatnonzero(size >= 2)
    ranked = multi[np.lexsort((first[multi], -size[multi]))]
    label = np.full(n_nodes, -1, dtype=np.int64)
    label[ranked] = np.arange(1, ranked.size + 1)
    return label[roots], node_size.astype(np.int64)


@njit(cache=True)
def _union_all(parent: IntArray, src: IntArray, tgt: IntArray) -> IntArray:
    for e in range(src.shape[0]):
        a, b = _find(parent, src[e]), _find(parent, tgt[e])
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    out = np.empty(parent.shape[0], dtype=np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


def propagate_annotations(n_nodes: int, edges: Edges, annotated: BoolArray, probability: FloatArray
                          ) -> tuple[IntArray, FloatArray]:
    """For each node without an annotation, the neighbour whose annotation is most reliable (edge score x
    the neighbour's annotation probability; ties to the smaller node id) and that reliability; -1 / NaN
    where no neighbour is annotated or the node has its own annotation."""
    src = np.concatenate([edges.source, edges.target])
    tgt = np.concatenate([edges.target, edges.source])
    score = np.concatenate([edges.score, edges.score]).astype(np.float64)
    prob = np.nan_to_num(np.asarray(probability, dtype=np.float64), nan=0.0)
    sel = ~annotated[src] & annotated[tgt]
    src, tgt, rel = src[sel], tgt[sel], score[sel] * prob[tgt[sel]]
    best = np.full(n_nodes, -1, dtype=np.int64)
    reliability = np.full(n_nodes, np.nan, dtype=np.float32)
    if src.size:
        order = np.lexsort((tgt, -rel, src))
        src, tgt, rel = src[order], tgt[order], rel[order]
        first = np.r_[True, src[1:] != src[:-1]]
        best[src[first]] = tgt[first]
        reliability[src[first]] = rel[first].astype(np.float32)
    return best, reliability


def rescore_edges(peaks: Peaks, source: IntArray, target: IntArray, method: str, *, tolerance: float = 0.02
                  ) -> tuple[npt.NDArray[np.float64], IntArray]:
    """Exact spectral similarity and matched peaks of node pairs: ``modified-cosine`` (matchms' greedy
    modified cosine) or ``entropy`` (ms_entropy's entropy similarity; matched peaks = peaks of the
    cleaned spectra within ``tolerance``, matched greedily)."""
    if source.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if method == "modified-cosine":
        return modified_cosine(peaks, peaks, source, target, tolerance=tolerance)
    if method == "entropy":
        prepared = prepare_entropy(peaks, tolerance_da=tolerance)
        _, matches = cosine_greedy(prepared.peaks, prepared.peaks, source, target, tolerance=tolerance)
        return entropy_similarity(prepared, prepared, source, target), matches
    raise ValueError(f"unknown re-score {method!r}")
