"""Gradient-boosted regression trees stored as JSON and evaluated by a compiled kernel.

A :class:`TreeEnsemble` is what a fitted ``sklearn.ensemble.HistGradientBoostingRegressor`` (squared
error, numerical features) predicts: ``baseline + sum over trees of the value of the leaf a row reaches``,
where a row goes left at a split when ``x <= threshold`` (a missing value, NaN, goes the side the split
learned). The trees are stored flat (one array per node field, ``roots`` giving each tree's first node)
in ``engine/data/calibration/<name>.json`` with the encoder hash of the model whose features they were
fitted on, like :class:`engine.models.calibration.Calibration`; :func:`load_trees` returns ``None`` for
another model. :meth:`TreeEnsemble.predict` runs the numba kernel :func:`_predict_kernel`;
:meth:`TreeEnsemble.predict_reference` is the plain numpy statement of the same walk (the tests' oracle).
:func:`from_sklearn` converts a fitted regressor (scikit-learn is needed only for fitting, in the
benchmarks; the engine evaluates the JSON).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from engine.core.errors import EngineError, IncompatibleArtifactError
from engine.core.paths import CALIBRATION_DIR

#: Format version of the stored JSON (bumped when the layout changes; another version is refused).
TREES_FORMAT = 1

_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "is_leaf", "value")


@njit(cache=True, parallel=True, nogil=True)
def _predict_kernel(x: npt.NDArray[np.float64], roots: npt.NDArray[np.int64], feature: npt.NDArray[np.int64],
                    threshold: npt.NDArray[np.float64], left: npt.NDArray[np.int64], right: npt.NDArray[np.int64],
                    missing_left: npt.NDArray[np.bool_], is_leaf: npt.NDArray[np.bool_],
                    value: npt.NDArray[np.float64], baseline: float) -> npt.NDArray[np.float64]:
    """Sum of the leaf values each row of ``x`` reaches in every tree, plus ``baseline``."""
    n = x.shape[0]
    out = np.empty(n)
    for i in prange(n):
        total = baseline
        for t in range(roots.shape[0]):
            node = roots[t]
            while not is_leaf[node]:
                v = x[i, feature[node]]
                go_left = missing_left[node] if v != v else v <= threshold[node]  # v != v: NaN
                node = left[node] if go_left else right[node]
            total += value[node]
        out[i] = total
    return out


@dataclass(frozen=True)
class TreeEnsemble:
    """Boosted regression trees over named features (see module docs)."""

    name: str
    features: tuple[str, ...]
    baseline: float
    roots: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]
    threshold: npt.NDArray[np.float64]
    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    missing_left: npt.NDArray[np.bool_]
    is_leaf: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]
    encoder_hash: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.feature.shape[0]
        if any(getattr(self, a).shape != (n,) for a in _ARRAYS):
            raise IncompatibleArtifactError(f"tree ensemble {self.name!r}: node arrays of different lengths")
        inner = ~self.is_leaf
        if n and (self.roots.min(initial=0) < 0 or self.roots.max(initial=0) >= n
                  or (inner.any() and (self.left[inner].max() >= n or self.right[inner].max() >= n
                                       or self.feature[inner].max() >= len(self.features)
                                       or self.feature[inner].min() < 0))):
            raise IncompatibleArtifactError(f"tree ensemble {self.name!r}: a node points outside the ensemble "
                                            "or its features")

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    def matrix(self, features: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """The feature matrix (rows, :attr:`features`) from named arrays."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise KeyError(f"tree ensemble {self.name!r} needs features {missing}")
        return np.ascontiguousarray(np.stack([np.asarray(features[f], dtype=np.float64) for f in self.features],
                                             axis=1))

    def predict(self, features: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """The ensemble's prediction for every row of the feature arrays (compiled kernel)."""
        x = self.matrix(features)
        if x.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(_predict_kernel(x, self.roots, self.feature, self.threshold, self.left, self.right,
                                          self.missing_left, self.is_leaf, self.value, float(self.baseline)))

    def predict_reference(self, features: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """The same prediction by a vectorised numpy walk, all rows of one tree at a time (the oracle)."""
        x = self.matrix(features)
        out = np.full(x.shape[0], float(self.baseline))
        rows = np.arange(x.shape[0])
        for root in self.roots:
            node = np.full(x.shape[0], root, dtype=np.int64)
            active = ~self.is_leaf[node]
            while active.any():
                at = node[active]
                v = x[rows[active], self.feature[at]]
                go_left = np.where(np.isnan(v), self.missing_left[at], v <= self.threshold[at])
                node[active] = np.where(go_left, self.left[at], self.right[at])
                active = ~self.is_leaf[node]
            out += self.value[node]
        return out

    def content_sha(self) -> str:
        """SHA-256 of the trees and their feature names (what a scale fitted on their output depends on)."""
        digest = hashlib.sha256(json.dumps([list(self.features), self.baseline]).encode())
        for a in ("roots", *_ARRAYS):
            digest.update(np.ascontiguousarray(getattr(self, a)).tobytes())
        return digest.hexdigest()

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": TREES_FORMAT, "kind": "gradient-boosted regression trees",
                                "name": self.name, "features": list(self.features), "baseline": self.baseline,
                                "encoder_hash": self.encoder_hash, "info": self.info,
                                "roots": self.roots.tolist()}
        for a in _ARRAYS:
            arr = getattr(self, a)
            data[a] = arr.astype(int).tolist() if arr.dtype == np.bool_ else arr.tolist()
        return json.dumps(data, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "<json>") -> TreeEnsemble:
        data = json.loads(text)
        if data.get("format") != TREES_FORMAT:
            raise IncompatibleArtifactError(f"{source}: tree ensemble format {data.get('format')!r}, this engine reads "
                              f"{TREES_FORMAT}; refit it with this engine's benchmarks")
        dtypes = {"feature": np.int64, "threshold": np.float64, "left": np.int64, "right": np.int64,
                  "missing_left": np.bool_, "is_leaf": np.bool_, "value": np.float64}
        return cls(name=data["name"], features=tuple(data["features"]), baseline=float(data["baseline"]),
                   roots=np.asarray(data["roots"], dtype=np.int64),
                   **{a: np.asarray(data[a], dtype=t) for a, t in dtypes.items()},
                   encoder_hash=data.get("encoder_hash"), info=data.get("info") or {})

    def save(self, path: str | Path | None = None) -> Path:
        out = Path(path) if path is not None else CALIBRATION_DIR / f"{self.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json())
        return out


def load_trees(name: str, encoder_hash: str | None, *, directory: str | Path | None = None) -> TreeEnsemble | None:
    """The stored ensemble ``name`` when it was fitted for ``encoder_hash`` (or is model-free), else None."""
    file = (Path(directory) if directory is not None else CALIBRATION_DIR) / f"{name}.json"
    if not file.is_file():
        return None
    trees = TreeEnsemble.from_json(file.read_text(), source=str(file))
    if trees.encoder_hash is not None and trees.encoder_hash != encoder_hash:
        return None
    return trees


def from_sklearn(regressor: Any, name: str, features: tuple[str, ...], *, encoder_hash: str | None = None,
                 info: dict[str, Any] | None = None) -> TreeEnsemble:
    """A :class:`TreeEnsemble` from a fitted ``HistGradientBoostingRegressor`` (numerical features only)."""
    if getattr(regressor, "n_trees_per_iteration_", 1) != 1:
        raise EngineError("only single-output regressors convert to a tree ensemble")
    if getattr(regressor, "is_categorical_", None) is not None and np.any(regressor.is_categorical_):
        raise EngineError("categorical splits do not convert to a tree ensemble")
    if len(features) != regressor.n_features_in_:
        raise EngineError(f"{len(features)} feature names for a regressor of {regressor.n_features_in_} features")
    parts: dict[str, list[npt.NDArray[Any]]] = {a: [] for a in _ARRAYS}
    roots, offset = [], 0
    for (predictor,) in regressor._predictors:
        nodes = predictor.nodes
        roots.append(offset)
        leaf = nodes["is_leaf"].astype(bool)
        parts["feature"].append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
        parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
        parts["left"].append(np.where(leaf, 0, nodes["left"].astype(np.int64) + offset))
        parts["right"].append(np.where(leaf, 0, nodes["right"].astype(np.int64) + offset))
        parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
        parts["is_leaf"].append(leaf)
        parts["value"].append(np.where(leaf, nodes["value"], 0.0).astype(np.float64))
        offset += nodes.shape[0]
    baseline = float(np.asarray(regressor._baseline_prediction).ravel()[0])
    return TreeEnsemble(name=name, features=tuple(features), baseline=baseline, roots=np.asarray(roots, np.int64),
                        **{a: np.concatenate(v) for a, v in parts.items()}, encoder_hash=encoder_hash,
                        info=info or {})
