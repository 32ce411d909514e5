"""Quality of a spectrum embedding: the expected error of the Tanimoto it predicts, mapped to 0..1.

Every method turns a spectrum into a *score*; a monotone piecewise-linear map fitted on held-out
training spectra (the calibration fold) turns the score into the expected RMSE of that spectrum's
Tanimoto predictions, and ``quality = clip(1 - expected_rmse / rmse_scale, 0, 1)``. A spectrum is
flagged when ``quality < threshold`` (by default: expected RMSE above 0.25).

Methods: ``peaks`` (peak count only, the untrained fallback), ``knn`` (mean cosine similarity to the
``k`` nearest of ``n_reference`` training embeddings: unlike-the-training-data spectra score low) and
``mlp`` (a small learned error predictor over the embedding, side features, pre-normalisation length
and the kNN similarity, as MS2DeepScore 2's embedding evaluator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from engine.core.config import Settings, setting

QualityMethod = Literal["peaks", "knn", "mlp"]
N_KNOTS = 16


@dataclass(frozen=True)
class QualityConfig(Settings):
    """How the quality estimate is computed; the fitted numbers live in the model's weights."""

    method: QualityMethod = "peaks"
    n_reference: int = setting(2048, ge=1)
    k: int = setting(10, ge=1)
    hidden_dim: int = 64
    rmse_scale: float = setting(0.5, gt=0)
    threshold: float = setting(0.5, ge=0, le=1)

    def check(self) -> Iterable[str]:
        if self.n_reference < self.k:
            yield "quality needs k <= n_reference"


def n_features(dim: int, n_side: int) -> int:
    return dim + n_side + 2


class QualityHead(nn.Module):
    """Scores spectra and maps the score to an expected Tanimoto RMSE (see module docs)."""

    reference: torch.Tensor
    knots_x: torch.Tensor
    knots_y: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, config: QualityConfig, dim: int, n_side: int) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("reference", torch.zeros(config.n_reference, dim))
        # default map for the ``peaks`` score log1p(n)/6: 1 peak -> 0.45, 5 -> 0.3, 30+ -> 0.15
        xs = torch.linspace(0.0, 1.0, N_KNOTS)
        ys = torch.from_numpy(np.interp(xs.numpy(), [0.0, np.log1p(1) / 6, np.log1p(5) / 6, np.log1p(30) / 6, 1.0],
                                        [0.5, 0.45, 0.3, 0.15, 0.15]).astype(np.float32))
        self.register_buffer("knots_x", xs)
        self.register_buffer("knots_y", ys)
        self.register_buffer("feature_mean", torch.zeros(n_features(dim, n_side)))
        self.register_buffer("feature_std", torch.ones(n_features(dim, n_side)))
        self.mlp = nn.Sequential(nn.Linear(n_features(dim, n_side), config.hidden_dim), nn.ReLU(),
                                 nn.Linear(config.hidden_dim, 1))

    def knn_similarity(self, emb: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of each (normalised) embedding to its ``k`` nearest references."""
        sims = emb @ self.reference.T
        return sims.topk(self.config.k, dim=1).values.mean(dim=1)

    def features(self, emb: torch.Tensor, raw_norm: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        knn = self.knn_similarity(emb)
        return torch.cat([emb, side, torch.log(raw_norm.clamp_min(1e-6))[:, None], knn[:, None]], dim=1)

    def mlp_score(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp((feats - self.feature_mean) / self.feature_std).squeeze(1)

    def score(self, emb: torch.Tensor, raw_norm: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        method = self.config.method
        if method == "peaks":
            return side[:, 3]
        if method == "knn":
            return self.knn_similarity(emb)
        return self.mlp_score(self.features(emb, raw_norm, side))

    def expected_rmse(self, score: torch.Tensor) -> torch.Tensor:
        return interp(score, self.knots_x, self.knots_y)

    def forward(self, emb: torch.Tensor, raw_norm: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """Quality in 0..1 (higher = more trustworthy)."""
        rmse = self.expected_rmse(self.score(emb, raw_norm, side))
        return (1.0 - rmse / self.config.rmse_scale).clamp(0.0, 1.0)


def interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation with constant extrapolation (``xs`` increasing)."""
    x = x.clamp(xs[0], xs[-1])
    i = torch.searchsorted(xs, x.contiguous()).clamp(1, xs.shape[0] - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    t = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-12), torch.zeros_like(x))
    return y0 + t * (y1 - y0)


def isotonic(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], *, increasing: bool
             ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A monotone map from ``x`` to ``y`` as :data:`N_KNOTS` knots: quantile bins, then pool-adjacent-violators."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    edges = np.linspace(0, xs.shape[0], N_KNOTS + 1).astype(int)
    bx = np.array([xs[a:b].mean() for a, b in pairwise(edges)])
    by = np.array([ys[a:b].mean() for a, b in pairwise(edges)])
    sign = 1.0 if increasing else -1.0
    vals, weights = [], []
    for v in sign * by:
        vals.append(v)
        weights.append(1.0)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = weights[-2] + weights[-1]
            v2 = (vals[-2] * weights[-2] + vals[-1] * weights[-1]) / w
            vals[-2:] = [v2]
            weights[-2:] = [w]
    fitted = np.repeat(np.array(vals) * sign, np.array(weights).astype(int))
    bx = np.maximum.accumulate(bx + np.arange(N_KNOTS) * 1e-9)
    return bx.astype(np.float32), fitted.astype(np.float32)
