"""Structure consensus: the expected Tanimoto of each candidate to the likely structures, per query."""

from __future__ import annotations

import numpy as np

from engine.queries.analogue import consensus_scores


def _tanimoto(a: np.ndarray, b: np.ndarray) -> float:
    x, y = np.unpackbits(a).astype(bool), np.unpackbits(b).astype(bool)
    union = (x | y).sum()
    return float((x & y).sum() / union) if union else 0.0


def _reference(qi: np.ndarray, logit: np.ndarray, fps: np.ndarray, top: int, temperature: float) -> np.ndarray:
    out = np.full(qi.shape[0], np.nan)
    for q in np.unique(qi):
        rows = np.flatnonzero(qi == q)
        best = rows[np.argsort(-logit[rows], kind="stable")[:top]]
        w = np.exp((logit[best] - logit[best].max()) / temperature)
        w /= w.sum()
        for r in best:
            sims = [1.0 if s == r else _tanimoto(fps[r], fps[s]) for s in best]
            out[r] = float(np.dot(sims, w))
    return out


def test_consensus_equals_a_plain_loop_on_shuffled_uneven_candidate_lists() -> None:
    rng = np.random.default_rng(3)
    counts = [1, 2, 5, 12, 7]  # queries with fewer and more candidates than ``top``
    qi = np.repeat(np.arange(len(counts)), counts)
    order = rng.permutation(qi.shape[0])  # rows of one query need not be adjacent
    qi = qi[order]
    logit = rng.normal(size=qi.shape[0])
    structures = (rng.random((6, 256)) < 0.3) * rng.integers(1, 256, (6, 256))
    fps = structures[rng.integers(0, 6, qi.shape[0])].astype(np.uint8)  # shared structures give Tanimoto 1
    fps[0] = 0  # a row without a fingerprint
    got = consensus_scores(qi, logit, fps, top=6, temperature=0.5)
    want = _reference(qi, logit, fps, 6, 0.5)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=1e-12)
    assert np.isnan(got).sum() == 12 - 6 + 7 - 6  # rows beyond a query's top 6


def test_smaller_tops_cut_from_a_larger_block_equal_their_own() -> None:
    """A block asked for after a larger one is a slice of it (each query's best are its first slots): the
    consensus, anchors and fingerprint reads are those of a block made for that top alone."""
    from engine.queries.analogue import Consensus

    rng = np.random.default_rng(4)
    counts = [3, 60, 25, 61, 9]
    qi = np.repeat(np.arange(len(counts)), counts)
    qi = qi[rng.permutation(qi.shape[0])]
    logit = np.round(rng.normal(size=qi.shape[0]), 1)  # ties as well
    fps = ((rng.random((qi.shape[0], 256)) < 0.2) * rng.integers(1, 256, (qi.shape[0], 256))).astype(np.uint8)
    values = rng.normal(size=qi.shape[0])
    asked: list[int] = []

    def read(at: np.ndarray) -> np.ndarray:
        asked.append(at.shape[0])
        return fps[at]

    cut = Consensus(qi, logit, read)
    cut.block(60)
    for top in (30, 10):
        alone = Consensus(qi, logit, fps)
        np.testing.assert_allclose(cut(top, 0.3), alone(top, 0.3), equal_nan=True)
        np.testing.assert_allclose(cut.anchor(top, values), alone.anchor(top, values), equal_nan=True)
        np.testing.assert_allclose(cut(top, 0.3), consensus_scores(qi, logit, fps, top=top, temperature=0.3),
                                   equal_nan=True)
    assert asked == [sum(min(c, 60) for c in counts)]  # fingerprints read once, for the best 60 of each query only
