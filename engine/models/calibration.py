"""Small logistic models that turn similarity features into calibrated scores, stored as JSON.

A :class:`Calibration` holds standardisation, coefficients and intercept for a few named features;
``predict`` returns ``sigmoid(intercept + sum(coef * (x - mean) / scale))``. :func:`fit_logistic` fits
one by L2-regularised Newton iterations (labels may be soft, in 0..1, e.g. a Tanimoto similarity).
The fitted parameters live in ``engine/data/calibration/<name>.json`` with the encoder hash of the
model whose embeddings they were fitted on; :func:`load_calibration` returns ``None`` for another model,
and the queries then fall back to a documented spectral-only combination.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.paths import CALIBRATION_DIR


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Calibration:
    """Logistic model over named features (see module docs)."""

    name: str
    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    encoder_hash: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def linear(self, features: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        missing = [f for f in self.features if f not in features]
        if missing:
            raise KeyError(f"calibration {self.name!r} needs features {missing}")
        z = np.full(np.asarray(features[self.features[0]]).shape, self.intercept, dtype=np.float64)
        for f, c, m, s in zip(self.features, self.coef, self.mean, self.scale, strict=True):
            z += c * (np.asarray(features[f], dtype=np.float64) - m) / s
        return z

    def predict(self, features: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """Calibrated score in 0..1 for every row of the feature arrays."""
        return _sigmoid(self.linear(features))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        data = json.loads(text)
        for key in ("features", "coef", "mean", "scale"):
            data[key] = tuple(data[key])
        return cls(**data)

    def save(self, path: str | Path | None = None) -> Path:
        out = Path(path) if path is not None else CALIBRATION_DIR / f"{self.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json())
        return out


def load_calibration(name: str, encoder_hash: str | None, *, directory: str | Path | None = None
                     ) -> Calibration | None:
    """The stored calibration ``name`` when it was fitted for ``encoder_hash`` (or is model-free), else None."""
    path = Path(directory) if directory is not None else CALIBRATION_DIR
    file = path / f"{name}.json"
    if not file.is_file():
        return None
    cal = Calibration.from_json(file.read_text())
    if cal.encoder_hash is not None and cal.encoder_hash != encoder_hash:
        return None
    return cal


def fit_logistic(name: str, features: Mapping[str, npt.ArrayLike], target: npt.ArrayLike, *,
                 feature_names: Sequence[str] | None = None, l2: float = 1e-3,
                 sample_weight: npt.ArrayLike | None = None, encoder_hash: str | None = None,
                 max_iter: int = 100, info: dict[str, Any] | None = None) -> Calibration:
    """Fit ``P(target) = sigmoid(w . standardised(x) + b)`` by Newton's method with an L2 penalty on ``w``."""
    names = tuple(feature_names or features.keys())
    x = np.stack([np.asarray(features[f], dtype=np.float64) for f in names], axis=1)
    y = np.asarray(target, dtype=np.float64)
    w_s = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    z = np.concatenate([(x - mean) / scale, np.ones((x.shape[0], 1))], axis=1)
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2 * w_s.sum())
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(z @ beta)
        grad = z.T @ (w_s * (p - y)) + penalty * beta
        hess = (z * (w_s * p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(name=name, features=names, coef=tuple(float(v) for v in beta[:-1]),
                       intercept=float(beta[-1]), mean=tuple(float(v) for v in mean),
                       scale=tuple(float(v) for v in scale), encoder_hash=encoder_hash, info=info or {})


def _group_softmax(z: npt.NDArray[np.float64], group: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float64]:
    top = np.full(n, -np.inf)
    np.maximum.at(top, group, z)
    e = np.exp(z - top[group])
    return e / np.bincount(group, weights=e, minlength=n)[group]


def fit_listwise(name: str, features: Mapping[str, npt.ArrayLike], group: npt.ArrayLike, target: npt.ArrayLike,
                 *, feature_names: Sequence[str] | None = None, temperature: float = 0.1, l2: float = 1e-3,
                 iterations: int = 400, learning_rate: float = 0.05, encoder_hash: str | None = None,
                 info: dict[str, Any] | None = None) -> Calibration:
    """A linear ranker fitted listwise (ListNet): within each ``group`` (query), the softmax of
    ``w . standardised(x)`` is fitted to the softmax of ``target / temperature`` (Adam, L2 on ``w``).

    Only :meth:`Calibration.linear` is meaningful for the result (the order it induces per query).
    """
    names = tuple(feature_names or features.keys())
    x = np.stack([np.asarray(features[f], dtype=np.float64) for f in names], axis=1)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    n = int(g.max()) + 1 if g.size else 0
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    z = (x - mean) / scale
    p = _group_softmax(np.asarray(target, dtype=np.float64) / temperature, g, n)
    w = np.zeros(z.shape[1])
    m1, m2 = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, iterations + 1):
        q = _group_softmax(z @ w, g, n)
        grad = z.T @ (q - p) / max(n, 1) + l2 * w
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad ** 2
        w -= learning_rate * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
    return Calibration(name=name, features=names, coef=tuple(float(v) for v in w), intercept=0.0,
                       mean=tuple(float(v) for v in mean), scale=tuple(float(v) for v in scale),
                       encoder_hash=encoder_hash, info={"kind": "listwise ranker", "temperature": temperature,
                                                        **(info or {})})


def reliability_table(score: npt.ArrayLike, outcome: npt.ArrayLike, *, n_bins: int = 10) -> list[dict[str, Any]]:
    """Rows (bin, n, mean score, observed rate) for a reliability diagram over equal-width score bins."""
    s = np.asarray(score, dtype=np.float64)
    o = np.asarray(outcome, dtype=np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            rows.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(sel.sum()),
                         "mean_score": float(s[sel].mean()), "observed": float(o[sel].mean())})
    return rows
