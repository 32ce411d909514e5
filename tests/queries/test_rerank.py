"""Second-stage analogue re-ranking: the top candidates re-scored with structure consensus."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from query_helpers import build_test_library, split_queries

from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.models.calibration import Calibration
from engine.models.trees import TreeEnsemble
from engine.queries.analogue import (
    AnalogueSettings,
    Consensus,
    analogue_score_model,
    analogue_search,
    consensus_scores,
)
from engine.queries.hits import top_per_query
from engine.queries.references import References
from engine.queries.rerank import (
    KNOWN_MASS_DELTAS,
    TREE_ANCHORS,
    TREE_BASE_FEATURES,
    consensus_name,
    fits_first_stage,
    gap_to_best,
    load_linear_scale,
    load_reranker,
    load_tree_reranker,
    load_tree_scale,
    mass_delta_features,
    rank_in_query,
    rerank_order,
    tree_consensus_pairs,
    tree_features,
    tree_order,
)


def _reranker(consensus_weight: float, *, top: int = 3) -> Calibration:
    features = ("first_logit", consensus_name(0))
    return Calibration("test_rerank", features=features, coef=(1.0, consensus_weight), intercept=0.0,
                       mean=(0.0, 0.0), scale=(1.0, 1.0), info={"top": top, "temperatures": [0.5]})


def _fingerprints(bits: list[list[int]]) -> npt.NDArray[np.uint8]:
    out = np.zeros((len(bits), 256), dtype=np.uint8)
    for row, on in enumerate(bits):
        out[row, on] = 0xFF
    return out


def test_consensus_moves_the_central_structure_first_inside_top_only() -> None:
    # one query, four candidates: 0 is best by the first stage but unlike 1 and 2, which agree with each
    # other; 3 is outside the top 3 and must stay last whatever its features
    qi = np.zeros(4, dtype=np.int64)
    first = np.array([3.0, 2.9, 2.8, 0.0])
    fps = _fingerprints([[0], [1, 2], [1, 2], [1, 2]])

    def consensus(top: int, temperature: float) -> npt.NDArray[np.float64]:
        return consensus_scores(qi, first, fps, top=top, temperature=temperature)

    order = rerank_order({}, first, consensus, _reranker(10.0))
    keep, rank = top_per_query(qi, order, 4)
    assert keep[0] in (1, 2)  # the consensus structure wins
    assert keep[-1] == 3  # outside the top keeps first-stage order, below all re-scored rows
    # without a consensus weight the first-stage order stands
    keep0, _ = top_per_query(qi, rerank_order({}, first, consensus, _reranker(0.0)), 4)
    assert keep0.tolist() == [0, 1, 2, 3]
    assert rank.tolist() == [1, 2, 3, 4]


def test_stored_reranker_belongs_to_the_bundled_model() -> None:
    from engine.models.checkpoint import load_checkpoint
    from engine.models.model import DEFAULT_MODEL

    model_hash = load_checkpoint(DEFAULT_MODEL)["content_hash"]
    stored = load_reranker(model_hash)
    assert stored is not None, "analogue_rerank.json missing or fitted for another model"
    n_consensus = sum(f.startswith("consensus_t") for f in stored.features)
    assert n_consensus == len(stored.info["temperatures"]) and int(stored.info["top"]) >= 2
    assert "first_logit" in stored.features
    assert load_reranker("another-encoder") is None
    # it applies only after the first stage it was fitted on
    first = analogue_score_model(model_hash).ranker
    assert first is not None and fits_first_stage(stored, first)
    other = dataclasses.replace(first, coef=tuple(2.0 * c for c in first.coef))
    assert not fits_first_stage(stored, other)
    assert not fits_first_stage(stored, dataclasses.replace(first, features=first.features[:-1],
                                                            coef=first.coef[:-1]))


def test_stored_tree_reranker_belongs_to_the_bundled_model() -> None:
    from engine.models.checkpoint import load_checkpoint
    from engine.models.model import DEFAULT_MODEL

    model_hash = load_checkpoint(DEFAULT_MODEL)["content_hash"]
    trees = load_tree_reranker(model_hash)
    assert trees is not None, "analogue_rerank_trees.json missing or fitted for another model"
    assert load_tree_reranker("another-encoder") is None
    first = analogue_score_model(model_hash).ranker
    assert first is not None and fits_first_stage(trees, first)
    # its features are exactly what tree_features computes, and it predicts a Tanimoto-like value
    pairs = tuple((int(t), float(f)) for t, f in trees.info["consensus"])
    assert pairs == tree_consensus_pairs(int(trees.info["top"]))
    qi, first = np.zeros(2, np.int64), np.array([1.0, 0.0])
    names = tree_features(qi, {f: np.array([0.5, 0.2]) for f in TREE_BASE_FEATURES}, first,
                          Consensus(qi, first, _fingerprints([[0, 1], [1, 2]])), 1.0, pairs, int(trees.info["top"]))
    assert set(trees.features) == set(names)
    assert {f"anchor_{f}" for f in TREE_ANCHORS} | {"mass_delta_distance", "mass_delta_known"} <= set(names)
    predicted = trees.predict(names)
    assert np.all((predicted > -0.2) & (predicted < 1.2))
    # the reliability of tree-ordered hits was fitted on these very trees, and reads their prediction
    scale = load_tree_scale(model_hash, trees)
    assert scale is not None and "predicted_tanimoto" in scale.features
    assert load_tree_scale(model_hash, dataclasses.replace(trees, baseline=trees.baseline + 0.01)) is None


def test_stored_linear_scale_belongs_to_the_stored_linear_reranker() -> None:
    from engine.models.checkpoint import load_checkpoint
    from engine.models.model import DEFAULT_MODEL

    model_hash = load_checkpoint(DEFAULT_MODEL)["content_hash"]
    reranker = load_reranker(model_hash)
    assert reranker is not None
    scale = load_linear_scale(model_hash, reranker)
    assert scale is not None, "analogue_rerank_linear_scale.json missing or fitted for another re-ranker"
    assert int(scale.info["pool"]) < int(load_tree_reranker(model_hash).info["top"])  # type: ignore[union-attr]
    # a re-ranker with other coefficients orders differently: the scale is not used for it
    moved = dataclasses.replace(reranker, coef=tuple(c + 0.1 for c in reranker.coef))
    assert load_linear_scale(model_hash, moved) is None
    assert load_linear_scale("another-encoder", reranker) is None


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory,
            sample_spectra: list[Spectrum]) -> tuple[Any, Any, pa.RecordBatch]:
    """The bundled model, a library of four in five sample spectra and the others as a query batch."""
    from engine.models.model import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)
    queries, refs = split_queries(sample_spectra, every=5)
    return model, build_test_library(tmp_path_factory.mktemp("library") / "library", refs, model), \
        spectra_to_batch(queries)


@pytest.mark.slow
def test_small_pools_score_hits_with_the_linear_scale(bundled: tuple[Any, Any, pa.RecordBatch]) -> None:
    """Below the trees' pool the hits are in the linear re-ranker's order and their reliability comes from its
    own scale; a caller's score model keeps its scale."""
    from engine.queries.identity import ScoreModel

    model, lib, batch = bundled
    settings = AnalogueSettings(top_k=3, n_candidates=10)
    stored = analogue_search(batch, lib, References(lib), model, settings=settings)
    general = analogue_score_model(model.encoder_hash)
    given = analogue_search(batch, lib, References(lib), model, settings=settings,
                            score_model=ScoreModel(general.ranker, general.scale))
    assert stored.num_rows == given.num_rows > 0
    # same hits in the same order, scored by two different scales
    assert stored.column("library_id").to_pylist() == given.column("library_id").to_pylist()
    assert not np.allclose(stored.column("score").to_numpy(), given.column("score").to_numpy())


@pytest.mark.slow
def test_analogue_search_reranks_with_the_bundled_model(tmp_path: Path, sample_spectra: list[Spectrum]) -> None:
    from engine.models.model import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)
    queries, refs = split_queries(sample_spectra, every=5)
    lib = build_test_library(tmp_path / "library", refs, model)
    batch = spectra_to_batch(queries)
    on = analogue_search(batch, lib, References(lib), model, settings=AnalogueSettings(top_k=5))
    off = analogue_search(batch, lib, References(lib), model, settings=AnalogueSettings(top_k=5, rerank=False))
    for result in (on, off):
        assert result.num_rows > 0
        for _, rows in itertools.groupby(result.to_pylist(), key=lambda r: r["query_id"]):
            rows_ = list(rows)
            assert [r["rank"] for r in rows_] == list(range(1, len(rows_) + 1))
            scores = [r["score"] for r in rows_]
            assert scores == sorted(scores, reverse=True) and all(0 <= v <= 1 for v in scores)
    # the same candidates are retrieved; the re-ranker only reorders the best ones
    assert set(on.column("query_id").to_pylist()) == set(off.column("query_id").to_pylist())
    top_on = {r["query_id"]: r["library_id"] for r in on.to_pylist() if r["rank"] == 1}
    top_off = {r["query_id"]: r["library_id"] for r in off.to_pylist() if r["rank"] == 1}
    assert top_on.keys() == top_off.keys()


def test_ranks_and_gaps_within_each_query() -> None:
    qi = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    values = np.array([0.2, 0.9, 0.5, 3.0, 4.0])
    assert rank_in_query(qi, values).tolist() == [2, 0, 1, 1, 0]
    assert np.allclose(gap_to_best(qi, values), [0.7, 0.0, 0.4, 1.0, 0.0])


def _constant_trees(feature: str, top: int) -> TreeEnsemble:
    """One stump: rows with ``feature`` <= 0.5 predict 0.9, others 0.1 (so low values win)."""
    pairs = tree_consensus_pairs(top)
    names = tuple(tree_features(np.zeros(1, np.int64), dict.fromkeys(TREE_BASE_FEATURES, np.zeros(1)),
                                np.zeros(1), lambda t, temp: np.zeros(1), 1.0, pairs))
    return TreeEnsemble("t", features=names, baseline=0.0, roots=np.array([0]),
                        feature=np.array([names.index(feature), 0, 0]), threshold=np.array([0.5, 0, 0]),
                        left=np.array([1, 0, 0]), right=np.array([2, 0, 0]),
                        missing_left=np.zeros(3, bool), is_leaf=np.array([False, True, True]),
                        value=np.array([0.0, 0.9, 0.1]),
                        info={"top": top, "spread": 1.0, "consensus": [list(p) for p in pairs]})


def test_trees_over_a_larger_top_read_their_own_consensus_pairs() -> None:
    # trees re-scoring the best 60 carry consensus among those 60; tree_order computes it from the stored
    # pairs: 60 candidates of 60 structures, the one least central among them (structure 59, no shared bits
    # with the others) gets the lowest consensus and the stump's 0.9
    assert tree_consensus_pairs(30) == tree_consensus_pairs(20) and (60, 0.2) in tree_consensus_pairs(60)
    n = 60
    qi = np.zeros(n, dtype=np.int64)
    first = np.linspace(3.0, 0.0, n)
    feats = {f: np.zeros(n) for f in TREE_BASE_FEATURES}
    fps = _fingerprints([[0, 1, 2 + i] for i in range(n - 1)] + [[200]])
    consensus = Consensus(qi, first, fps)
    trees = _constant_trees("consensus_top60_x1000", n)
    low = np.sort(np.nan_to_num(consensus(n, 1e3)))
    stump = float(low[:2].mean())  # between the outlier and the rest
    assert low[0] < stump < low[1]
    trees = dataclasses.replace(trees, threshold=np.array([stump, 0.0, 0.0]))
    order, predicted = tree_order(trees, qi, feats, first, consensus)
    assert np.isfinite(predicted).all()
    keep, _ = top_per_query(qi, order, 1)
    assert keep.tolist() == [n - 1]


def test_tree_order_rescores_only_the_top_and_keeps_the_rest_below() -> None:
    # one query, four candidates; the stump prefers a low embedding cosine, so inside the top 3 the
    # first-stage order is reversed where it disagrees; candidate 3 (outside the top) stays last
    qi = np.zeros(4, dtype=np.int64)
    first = np.array([3.0, 2.9, 2.8, 0.0])
    feats = {f: np.zeros(4) for f in TREE_BASE_FEATURES}
    feats["embedding_cosine"] = np.array([0.9, 0.8, 0.1, 0.0])
    fps = _fingerprints([[0], [1], [2], [3]])
    order, predicted = tree_order(_constant_trees("embedding_cosine", 3), qi, feats, first, Consensus(qi, first, fps))
    keep, _ = top_per_query(qi, order, 4)
    assert keep.tolist() == [2, 0, 1, 3]
    assert np.allclose(predicted[:3], [0.1, 0.1, 0.9]) and np.isnan(predicted[3])


def test_anchor_is_the_tanimoto_to_each_querys_best_by_a_score() -> None:
    """Consensus.anchor against a direct computation: two queries, their top 3 by logit, anchors by ``values``."""
    qi = np.array([0, 0, 0, 0, 1, 1, 1], dtype=np.int64)
    logit = np.array([3.0, 2.0, 1.0, 0.0, 5.0, 4.0, 3.5])
    values = np.array([0.1, 0.9, 0.5, 5.0, 0.3, 0.2, 0.8])   # row 3 is outside query 0's top 3: never an anchor
    bits = [[0, 1, 2], [1, 2, 3], [2, 3, 4, 5], [9], [0, 1], [0, 1, 7], [7, 8]]
    fps = _fingerprints(bits)
    got = Consensus(qi, logit, fps).anchor(3, values)

    def tani(a: list[int], b: list[int]) -> float:
        return len(set(a) & set(b)) / len(set(a) | set(b))

    expected = [tani(bits[r], bits[1]) for r in (0, 1, 2)] + [np.nan] + [tani(bits[r], bits[6]) for r in (4, 5, 6)]
    assert np.allclose(got, expected, equal_nan=True)


def test_mass_delta_features_find_common_biotransformations() -> None:
    assert 162.05282 in KNOWN_MASS_DELTAS and 0.0 in KNOWN_MASS_DELTAS
    got = mass_delta_features(np.array([-162.0528, 15.99491 + 0.03, 0.002, 97.3, np.nan]))
    assert got["mass_delta_known"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    distance = 10 ** got["mass_delta_distance"] - 1e-3
    assert np.allclose(distance[:4], [0.00002, 0.03, 0.002, 97.3 - 86.00039], atol=1e-6)


@pytest.mark.slow
def test_a_large_batch_is_searched_in_parts_with_the_same_hits(bundled: tuple[Any, Any, pa.RecordBatch],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries are independent: a batch split by the candidate-row budget gives the hits of one pass (the
    embedding cosines of a smaller matrix product may differ in the last float32 bit)."""
    import engine.queries.analogue as analogue

    model, lib, batch = bundled
    settings = AnalogueSettings(top_k=3, n_candidates=60)
    whole = analogue_search(batch, lib, References(lib), model, settings=settings)
    monkeypatch.setattr(analogue, "MAX_CANDIDATE_ROWS", 60 * 3)  # three queries a part
    parts = analogue_search(batch, lib, References(lib), model, settings=settings)
    assert batch.num_rows > 3 and parts.num_rows == whole.num_rows > 0
    for name in ("query_id", "rank", "library_id"):
        assert parts.column(name).to_pylist() == whole.column(name).to_pylist()
    for name in ("score", "embedding_cosine", "spectral_similarity"):
        np.testing.assert_allclose(parts.column(name).to_numpy(), whole.column(name).to_numpy(), atol=1e-5)
