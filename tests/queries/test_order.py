"""Ordering rows within queries: the padded per-query sort equals one lexicographic sort of all rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.queries.hits import order_in_queries, top_per_query
from engine.queries.rerank import rank_in_query


def _lexsort(qi: np.ndarray, score: np.ndarray, tiebreak: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((-(tiebreak if tiebreak is not None else np.zeros_like(score)), -score, qi))
    q = qi[order]
    start = np.r_[0, np.flatnonzero(q[1:] != q[:-1]) + 1]
    return order, np.arange(qi.shape[0]) - np.repeat(start, np.diff(np.r_[start, qi.shape[0]]))


VALUES = st.sampled_from([0.0, 1.0, 2.0, -1.5, np.inf, -np.inf, np.nan])


@settings(max_examples=300, deadline=None)
@given(counts=st.lists(st.integers(1, 12), min_size=1, max_size=8), data=st.data(),
       shuffle=st.booleans(), with_tiebreak=st.booleans())
def test_order_in_queries_equals_a_lexsort(counts: list[int], data: st.DataObject, shuffle: bool,
                                           with_tiebreak: bool) -> None:
    qi = np.repeat(np.arange(len(counts)) * 3, counts).astype(np.int64)   # query ids with gaps
    n = qi.shape[0]
    score = np.asarray(data.draw(st.lists(VALUES, min_size=n, max_size=n)), dtype=np.float64)
    tiebreak = (np.asarray(data.draw(st.lists(VALUES, min_size=n, max_size=n)), dtype=np.float64)
                if with_tiebreak else None)
    if shuffle:   # rows of a query apart: the single sort
        perm = np.random.default_rng(len(counts)).permutation(n)
        qi, score = qi[perm], score[perm]
        tiebreak = tiebreak[perm] if tiebreak is not None else None
    got, rank = order_in_queries(qi, score, tiebreak)
    want, want_rank = _lexsort(qi, score, tiebreak)
    assert np.array_equal(got, want) and np.array_equal(rank, want_rank)


def test_top_per_query_and_ranks_on_a_search_sized_batch() -> None:
    rng = np.random.default_rng(0)
    qi = np.repeat(np.arange(200), rng.integers(900, 1001, 200)).astype(np.int64)
    score = np.round(rng.normal(size=qi.shape[0]), 2)   # many ties
    keep, rank = top_per_query(qi, score, 5)
    order, _ = _lexsort(qi, score, None)
    want = order[_first_k(qi[order], 5)]
    assert np.array_equal(keep, want) and set(rank.tolist()) == {1, 2, 3, 4, 5}
    ranks = rank_in_query(qi, score)
    pos = np.empty(qi.shape[0])
    pos[order] = _lexsort(qi, score, None)[1]
    assert np.array_equal(ranks, pos)


def _first_k(sorted_qi: np.ndarray, k: int) -> np.ndarray:
    start = np.r_[0, np.flatnonzero(sorted_qi[1:] != sorted_qi[:-1]) + 1]
    position = np.arange(sorted_qi.shape[0]) - np.repeat(start, np.diff(np.r_[start, sorted_qi.shape[0]]))
    return position < k
