"""Network building blocks against plain reference implementations: k-NN, mutual top-k, GNPS splitting."""

from __future__ import annotations

import networkx as nx
import numpy as np

from engine.queries.network import (
    Candidates,
    Edges,
    components,
    knn_candidates,
    merge_candidates,
    network_edges,
    propagate_annotations,
    split_components,
)


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_equals_brute_force_and_grows_exactly() -> None:
    rng = np.random.default_rng(0)
    emb = _unit(rng, 120)
    positive = rng.random(120) < 0.6
    every = np.arange(120)
    c = knn_candidates(emb, positive, every, every, top_k=5, cross_mode=True, tmap=None, batch_rows=17)
    sims = np.clip(emb.astype(np.float64) @ emb.T.astype(np.float64), 0, 1)
    np.fill_diagonal(sims, -1)
    for i in range(120):
        expected = np.lexsort((np.arange(120), -sims[i]))[:5]
        assert c.target[c.source == i].tolist() == expected.tolist()
    # same-mode only: never a cross pair
    same = knn_candidates(emb, positive, every, every, top_k=5, cross_mode=False, tmap=None)
    assert (positive[same.source] == positive[same.target]).all()
    # growth: old nodes 0..79, new 80..119
    old, new = np.arange(80), np.arange(80, 120)
    first = knn_candidates(emb, positive, old, old, top_k=5, cross_mode=True, tmap=None)
    grown = merge_candidates(first, Candidates.concat([
        knn_candidates(emb, positive, new, every, top_k=5, cross_mode=True, tmap=None),
        knn_candidates(emb, positive, old, new, top_k=5, cross_mode=True, tmap=None)]), 5)
    key = np.lexsort((c.target, c.source))
    gkey = np.lexsort((grown.target, grown.source))
    assert np.array_equal(c.source[key], grown.source[gkey]) and np.array_equal(c.target[key], grown.target[gkey])


def test_network_edges_are_mutual_and_thresholded() -> None:
    c = Candidates(np.array([0, 1, 0, 2, 3]), np.array([1, 0, 2, 3, 2]), np.ones(5, np.float32),
                   np.array([0.9, 0.9, 0.8, 0.4, 0.4], np.float32))
    e = network_edges(c, min_score=0.5)
    assert list(zip(e.source.tolist(), e.target.tolist(), strict=True)) == [(0, 1)]
    assert len(network_edges(c, min_score=0.3)) == 2
    assert len(network_edges(c, min_score=0.3, mutual=False)) == 3


def _gnps_reference(n: int, edges: Edges, max_size: int) -> set[tuple[int, int]]:
    """GNPS's rule, top-down: while a component is too large remove its lowest-scoring edges (all of
    equal score at once) until it falls apart; recurse on the pieces."""
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for a, b, w in zip(edges.source.tolist(), edges.target.tolist(), edges.score.tolist(), strict=True):
        g.add_edge(a, b, w=w)
    stack = [set(c) for c in nx.connected_components(g)]
    while stack:
        comp = stack.pop()
        if len(comp) <= max_size:
            continue
        sub = g.subgraph(comp)
        while nx.is_connected(sub):
            low = min(d["w"] for _, _, d in sub.edges(data=True))
            g.remove_edges_from([(a, b) for a, b, d in list(sub.edges(data=True)) if d["w"] == low])
            sub = g.subgraph(comp)
        stack += [set(c) for c in nx.connected_components(sub)]
    return {(min(a, b), max(a, b)) for a, b in g.edges()}


def test_split_components_matches_gnps_rule() -> None:
    rng = np.random.default_rng(1)
    for trial in range(20):
        n = 60
        m = 150
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        keep = a != b
        a, b = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        pairs = np.unique(np.stack([a, b], 1), axis=0)
        score = np.round(rng.random(pairs.shape[0]), 1 if trial % 2 else 3).astype(np.float32)  # ties half the time
        e = Edges(pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), score, score)
        for max_size in (3, 10, 25):
            kept = split_components(n, e, max_size)
            got = set(zip(kept.source.tolist(), kept.target.tolist(), strict=True))
            assert got == _gnps_reference(n, e, max_size)
            _, size = components(n, kept)
            assert size.max() <= max_size


def test_components_and_propagation() -> None:
    e = Edges(np.array([0, 1, 3]), np.array([1, 2, 4]), np.ones(3, np.float32), np.array([0.8, 0.6, 0.9], np.float32))
    label, size = components(6, e)
    assert label.tolist() == [1, 1, 1, 2, 2, -1] and size.tolist() == [3, 3, 3, 2, 2, 1]
    annotated = np.array([True, False, False, False, True, False])
    best, rel = propagate_annotations(6, e, annotated, np.array([0.5, 0, 0, 0, 1.0, 0], np.float32))
    assert best.tolist() == [-1, 0, -1, 4, -1, -1]
    assert np.isclose(rel[1], 0.4) and np.isclose(rel[3], 0.9) and np.isnan(rel[2])
