"""Evaluation metrics in one place: retrieval hit rates and binned Tanimoto-prediction RMSE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def rank_of_true(scores: npt.NDArray[np.float32], true_col: npt.NDArray[np.int64],
                 valid: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """1-based rank of the true column in every row of ``scores`` (ties counted pessimistically)."""
    if valid is not None:
        scores = np.where(valid, scores, -np.inf)
    true = scores[np.arange(scores.shape[0]), true_col]
    return (scores >= true[:, None]).sum(axis=1).astype(np.int64)


def hit_rates(ranks: npt.NDArray[np.int64], ks: Sequence[int] = (1, 5, 20), *, prefix: str = "") -> dict[str, float]:
    """``{prefix}hit_rate@k``: share of queries whose true answer ranks within the top ``k``."""
    return {f"{prefix}hit_rate@{k}": float((ranks <= k).mean()) if ranks.size else float("nan") for k in ks}


def binned_rmse(pred: npt.NDArray[np.float32], true: npt.NDArray[np.float32], *, n_bins: int = 10
                ) -> dict[str, Any]:
    """RMSE overall, per ``1/n_bins``-wide bin of the true Tanimoto, and their unweighted mean."""
    err = (pred - true) ** 2
    bins = np.minimum((true * n_bins).astype(np.int64), n_bins - 1)
    per_bin: list[dict[str, Any]] = []
    for b in range(n_bins):
        sel = bins == b
        per_bin.append({"bin": f"{b / n_bins:.1f}-{(b + 1) / n_bins:.1f}", "pairs": int(sel.sum()),
                        "rmse": float(np.sqrt(err[sel].mean())) if sel.any() else float("nan")})
    finite = [float(r["rmse"]) for r in per_bin if np.isfinite(float(r["rmse"]))]
    return {"rmse": float(np.sqrt(err.mean())) if err.size else float("nan"),
            "rmse_bin_mean": float(np.mean(finite)) if finite else float("nan"),
            "pairs": int(err.size), "per_bin": per_bin}


def balanced_pairs(tanimoto: npt.NDArray[np.float32], n_pairs: int, rng: np.random.Generator, *,
                   n_bins: int = 10) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """About ``n_pairs`` structure pairs (i, j) drawn evenly over Tanimoto bins (i == j allowed in the top bin)."""
    bins = np.minimum((tanimoto * n_bins).astype(np.int64), n_bins - 1)
    out_i, out_j = [], []
    per_bin = n_pairs // n_bins
    for b in range(n_bins):
        ii, jj = np.nonzero(bins == b)
        if ii.shape[0] == 0:
            continue
        pick = rng.choice(ii.shape[0], size=min(per_bin, ii.shape[0]), replace=False)
        out_i.append(ii[pick])
        out_j.append(jj[pick])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)
