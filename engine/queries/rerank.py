"""Second-stage analogue re-ranking (in the spirit of MS2Query, de Jonge et al. 2023).

The first-stage ranker orders a query's candidates; its best ``top`` are re-scored by a linear model,
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

import numpy as np
import numpy.typing as npt

from engine.models.calibration import Calibration, load_calibration

#: Stored re-ranker (fitted by ``benchmarks/search/analogue_levers.py --save``).
ANALOGUE_RERANKER = "analogue_rerank"


def load_reranker(encoder_hash: str | None) -> Calibration | None:
    """The stored re-ranker for this encoder, or None (then the first-stage order stands)."""
    cal = load_calibration(ANALOGUE_RERANKER, encoder_hash)
    if cal is None or int(cal.info.get("top", 0)) < 2 or not cal.info.get("temperatures"):
        return None
    return cal


def first_stage_info(ranker: Calibration) -> dict[str, object]:
    """What identifies a first-stage ranker (stored with the re-ranker)."""
    return {"name": ranker.name, "features": list(ranker.features), "coef": list(ranker.coef),
            "intercept": ranker.intercept, "mean": list(ranker.mean), "scale": list(ranker.scale)}


def fits_first_stage(reranker: Calibration, ranker: Calibration) -> bool:
    """Whether ``reranker`` was fitted on the orders of ``ranker`` (the logit it reads as ``first_logit``)."""
    stored = reranker.info.get("first_stage")
    current = first_stage_info(ranker)
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
