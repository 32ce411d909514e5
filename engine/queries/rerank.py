"""Second-stage analogue re-ranking (in the spirit of MS2Query, de Jonge et al. 2023).

The first-stage ranker orders a query's candidates; its best ``top`` are re-scored by a second model.
Two kinds are stored; the tree re-ranker is used when it is there for the model in use, else the linear one.

**Tree re-ranker** (:data:`ANALOGUE_RERANK_TREES`, :class:`engine.models.trees.TreeEnsemble`): gradient-boosted
regression trees predicting the Tanimoto of each of the best ``top`` candidates' structure to the query's, as
MS2Query's random forest does, from :func:`tree_features`: the similarity features, the first-stage logit,
the signed precursor mass difference, the candidate's rank by the first stage, embedding cosine and modified
cosine, its gaps to the query's best in four scores, and the structure consensus at the stored
``(top, temperature)`` pairs. Fitted on the calibration fold of ``train``, chosen there by cross-validation
grouped by structure (benchmarks/search/analogue_levers.py), over pools of ``info.pool`` candidates
(engine search's default); analogue search applies it when it retrieves at least ``top`` candidates per
query (the annotate job's small pools keep the linear re-ranker). Hits in its order are scored by their
own reliability scale (:data:`ANALOGUE_RERANK_SCALE`), which also reads the trees' predicted Tanimoto.

**Linear re-ranker** (:data:`ANALOGUE_RERANKER`): a linear model,
fitted listwise on the calibration fold of ``train`` to put the highest-Tanimoto structure first, over
the first-stage logit, the structure consensus of each candidate at several temperatures (expected
Tanimoto to the query's unknown structure, the candidates weighted by ``softmax(logit / temperature)``,
:func:`engine.queries.analogue.consensus_scores`) and the candidate's similarity features. Candidates
outside the ``top`` keep their first-stage order below all re-scored ones. The fitted model is
``engine/data/calibration/analogue_rerank.json`` (:data:`ANALOGUE_RERANKER`), with ``top``, the
absolute ``temperatures`` and the first-stage ranker it was fitted on (``first_stage``) in its ``info``;
it applies only after that same first stage (:func:`fits_first_stage`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine.models.calibration import Calibration, load_calibration
from engine.models.trees import TreeEnsemble, load_trees
from engine.queries.hits import order_in_queries

#: Stored re-rankers (fitted by ``benchmarks/search/analogue_levers.py --save``): linear and trees.
ANALOGUE_RERANKER, ANALOGUE_RERANK_TREES = "analogue_rerank", "analogue_rerank_trees"
#: The reliability scale of hits ordered by the tree re-ranker: the analogue scale's features plus the
#: trees' predicted Tanimoto (``predicted_tanimoto``), fitted on the fold's cross-validated tree order.
ANALOGUE_RERANK_SCALE = "analogue_rerank_scale"
#: The reliability scale of hits ordered by the linear re-ranker (the small pools of the annotate job): the
#: analogue scale's features, fitted on the fold at the annotate job's pool in that re-ranker's order.
ANALOGUE_LINEAR_SCALE = "analogue_rerank_linear_scale"

#: Similarity features the tree re-ranker reads as they are (:func:`engine.queries.analogue.analogue_features`)
TREE_BASE_FEATURES = ("embedding_cosine", "structure_cosine", "structure_max_cosine", "structure_max_modified",
                      "structure_max_entropy", "log_structure_spectra", "modified_cosine", "entropy",
                      "log_mass_difference", "mass_difference", "quality", "library_quality")
#: scores whose per-query rank (0 = best) and gap to the query's best are features
TREE_RANKED = ("first_logit", "embedding_cosine", "modified_cosine")
TREE_GAPS = ("first_logit", "embedding_cosine", "modified_cosine", "entropy")
#: structure consensus features: (top, temperature as a factor of the stored first-stage logit spread);
#: trees that re-score more than 30 candidates add their own ``top`` (:func:`tree_consensus_pairs`)
TREE_CONSENSUS = ((30, 0.1), (30, 0.2), (30, 0.5), (30, 1e3), (10, 0.2))
#: scores whose best candidate (among the trees' ``top``) anchors a structure-similarity feature (``anchor_<score>``)
TREE_ANCHORS = ("embedding_cosine", "modified_cosine", "entropy")
#: Mass differences (Da) of common biotransformations and neutral losses between related compounds: none, CH2, O,
#: H2O, H2, CO, CO2, NH3, C2H4, C2H2O (acetyl), CH2O, SO3, HPO3, hexose, deoxyhexose, pentose, glucuronide,
#: Cl for H, O2, C2H4O, C4H8, C3H2O3 (malonyl). ``mass_delta_distance`` is log10 of the distance of |mass difference|
#: to the nearest one (+ 1 mDa); ``mass_delta_known``: within 0.01 Da of one.
KNOWN_MASS_DELTAS = (0.0, 14.01565, 15.99491, 18.01056, 2.01565, 27.99491, 43.98983, 17.02655, 28.0313, 42.01057,
                     30.01056, 79.95682, 79.96633, 162.05282, 146.05791, 132.04226, 176.03209, 33.96103, 31.98983,
                     44.02621, 56.0626, 86.00039)
#: the smallest candidate pool a tree re-ranker is used with (the smallest ``top`` one is fitted with; the
#: stored trees' own ``top`` decides after that)
TREE_MIN_POOL = 30


class TopStructures(Protocol):
    """Structure agreement among each query's best ``top`` candidates (:class:`engine.queries.analogue.Consensus`)."""

    def __call__(self, top: int, temperature: float) -> npt.NDArray[np.float64]: ...

    def anchor(self, top: int, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...


def mass_delta_features(mass_difference: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
    """``mass_delta_distance`` and ``mass_delta_known`` of every row (see :data:`KNOWN_MASS_DELTAS`)."""
    diff = np.abs(np.nan_to_num(np.asarray(mass_difference, dtype=np.float64), nan=1e6))
    deltas = np.asarray(KNOWN_MASS_DELTAS)
    distance = np.min(np.abs(diff[:, None] - deltas[None, :]), axis=1) if diff.size else np.zeros(0)
    return {"mass_delta_distance": np.log10(distance + 1e-3), "mass_delta_known": (distance < 0.01).astype(np.float64)}


def tree_consensus_pairs(top: int) -> tuple[tuple[int, float], ...]:
    """The consensus (top, temperature factor) pairs of trees that re-score each query's best ``top``."""
    return TREE_CONSENSUS + (((top, 0.2), (top, 1e3)) if top > 30 else ())


def load_reranker(encoder_hash: str | None) -> Calibration | None:
    """The stored re-ranker for this encoder, or None (then the first-stage order stands)."""
    cal = load_calibration(ANALOGUE_RERANKER, encoder_hash)
    if cal is None or int(cal.info.get("top", 0)) < 2 or not cal.info.get("temperatures"):
        return None
    return cal


def load_tree_reranker(encoder_hash: str | None) -> TreeEnsemble | None:
    """The stored tree re-ranker for this encoder, or None."""
    trees = load_trees(ANALOGUE_RERANK_TREES, encoder_hash)
    if trees is None or int(trees.info.get("top", 0)) < 2 or "spread" not in trees.info:
        return None
    return trees


def load_tree_scale(encoder_hash: str | None, trees: TreeEnsemble) -> Calibration | None:
    """The reliability scale fitted with ``trees`` (same ``info.trees_sha``), or None."""
    scale = load_calibration(ANALOGUE_RERANK_SCALE, encoder_hash)
    if scale is None or scale.info.get("trees_sha") != trees.content_sha():
        return None
    return scale


def load_linear_scale(encoder_hash: str | None, reranker: Calibration) -> Calibration | None:
    """The reliability scale fitted in ``reranker``'s order (its ``info.reranker`` identifies it), or None."""
    scale = load_calibration(ANALOGUE_LINEAR_SCALE, encoder_hash)
    if scale is None or not same_linear(scale.info.get("reranker"), reranker):
        return None
    return scale


def first_stage_info(ranker: Calibration) -> dict[str, object]:
    """What identifies a first-stage ranker (stored with the re-ranker)."""
    return {"name": ranker.name, "features": list(ranker.features), "coef": list(ranker.coef),
            "intercept": ranker.intercept, "mean": list(ranker.mean), "scale": list(ranker.scale)}


def fits_first_stage(reranker: Calibration | TreeEnsemble, ranker: Calibration) -> bool:
    """Whether ``reranker`` was fitted on the orders of ``ranker`` (the logit it reads as ``first_logit``)."""
    return same_linear(reranker.info.get("first_stage"), ranker)


def same_linear(stored: object, model: Calibration) -> bool:
    """Whether ``stored`` (a :func:`first_stage_info` as saved with another calibration) describes ``model``."""
    current = first_stage_info(model)
    if not isinstance(stored, dict) or stored.get("features") != current["features"]:
        return False
    return all(np.allclose(np.asarray(stored.get(k), dtype=np.float64), np.asarray(current[k], dtype=np.float64))
               for k in ("coef", "intercept", "mean", "scale"))


def consensus_name(index: int) -> str:
    """Feature name of the consensus at the ``index``-th stored temperature."""
    return f"consensus_t{index}"


def rerank_order(features: dict[str, npt.NDArray[np.float64]], first_logit: npt.NDArray[np.float64],
                 consensus: Callable[[int, float], npt.NDArray[np.float64]], reranker: Calibration
                 ) -> npt.NDArray[np.float64]:
    """Ordering key of every candidate row: re-ranked inside each query's ``top``, first-stage order after.

    ``consensus(top, temperature)`` gives each row's structure consensus among its query's ``top``
    candidates by ``first_logit`` (NaN outside them), e.g. :func:`engine.queries.analogue.consensus_scores`
    bound to the rows' query index, the logit and the structure fingerprints.
    """
    top = int(reranker.info["top"])
    feats = dict(features)
    feats["first_logit"] = first_logit
    inside = np.zeros(first_logit.shape[0], dtype=bool)
    for i, temperature in enumerate(reranker.info["temperatures"]):
        cons = consensus(top, float(temperature))
        inside = np.isfinite(cons)
        feats[consensus_name(i)] = np.where(inside, cons, 0.0)
    score = reranker.linear(feats)
    return np.where(inside, 1e3 + score, first_logit - 1e3)


def rank_in_query(query_index: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each row's rank among its query's rows by descending ``values`` (0 = best; ties in row order)."""
    order, position = order_in_queries(query_index, np.asarray(values, dtype=np.float64))
    rank = np.empty(query_index.shape[0])
    rank[order] = position
    return rank


def gap_to_best(query_index: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """How far each row's ``values`` lies below its query's best."""
    best = np.full(int(query_index.max()) + 1 if query_index.size else 0, -np.inf)
    np.maximum.at(best, query_index, values)
    return best[query_index] - values


def consensus_feature_name(top: int, factor: float) -> str:
    return f"consensus_top{top}_x{factor:g}"


def tree_features(query_index: npt.NDArray[np.int64], features: dict[str, npt.NDArray[np.float64]],
                  first_logit: npt.NDArray[np.float64], consensus: TopStructures,
                  spread: float, pairs: tuple[tuple[int, float], ...] = TREE_CONSENSUS, top: int | None = None,
                  rows: npt.NDArray[np.bool_] | None = None) -> dict[str, npt.NDArray[np.float64]]:
    """The tree re-ranker's features of every candidate row (see module docs), or of ``rows`` only (ranks and
    gaps still among all of a query's rows); ``consensus`` as for :func:`rerank_order` (with anchors:
    :class:`TopStructures`), ``spread`` the first-stage logit spread the temperatures are factors of, ``pairs``
    the consensus (top, factor) pairs, ``top`` the trees' own (the anchors' candidates; none: no anchor
    features). A row outside a consensus's or the anchors' ``top`` gets -1 there."""
    pick = slice(None) if rows is None else rows
    out = {f: np.asarray(features[f], dtype=np.float64)[pick] for f in TREE_BASE_FEATURES}
    scores = {**features, "first_logit": first_logit}
    out["first_logit"] = np.asarray(first_logit, dtype=np.float64)[pick]
    for f in TREE_RANKED:
        out[f"rank_{f}"] = rank_in_query(query_index, np.asarray(scores[f], dtype=np.float64))[pick]
    for f in TREE_GAPS:
        out[f"gap_{f}"] = gap_to_best(query_index, np.asarray(scores[f], dtype=np.float64))[pick]
    for cons_top, factor in pairs:
        out[consensus_feature_name(int(cons_top), float(factor))] = np.nan_to_num(
            consensus(cons_top, factor * spread)[pick], nan=-1.0)
    if top is not None:
        for f in TREE_ANCHORS:
            out[f"anchor_{f}"] = np.nan_to_num(consensus.anchor(top, np.asarray(scores[f], dtype=np.float64))[pick],
                                               nan=-1.0)
    out.update(mass_delta_features(np.asarray(features["mass_difference"], dtype=np.float64)[pick]))
    return out


def tree_order(trees: TreeEnsemble, query_index: npt.NDArray[np.int64], features: dict[str, npt.NDArray[np.float64]],
               first_logit: npt.NDArray[np.float64], consensus: TopStructures
               ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Ordering key of every candidate row under the tree re-ranker (its ``top`` by ``first_logit`` by the
    trees' predicted Tanimoto, the others in first-stage order below) and that prediction (NaN outside)."""
    top = int(trees.info["top"])
    inside = np.isfinite(consensus(top, 1e3))
    predicted = np.full(first_logit.shape[0], np.nan)
    if inside.any():
        pairs = tuple((int(t), float(f)) for t, f in trees.info.get("consensus", TREE_CONSENSUS))
        feats = tree_features(query_index, features, first_logit, consensus, float(trees.info["spread"]), pairs, top,
                              rows=inside)
        predicted[inside] = trees.predict(feats)
    return np.where(inside, 1e3 + np.nan_to_num(predicted), first_logit - 1e3), predicted
