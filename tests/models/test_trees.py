"""Boosted regression trees: the compiled kernel against the numpy walk and scikit-learn, JSON artifacts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.core.errors import IncompatibleArtifactError
from engine.models.trees import TreeEnsemble, from_sklearn, load_trees


def _two_trees() -> TreeEnsemble:
    # tree 0: a <= 0.5 ? 1.0 : (b <= 2 ? 2.0 : 3.0), NaN in a goes right; tree 1: b <= 0 ? -1 : 0.5, NaN left
    return TreeEnsemble(
        name="test_trees", features=("a", "b"), baseline=0.25, roots=np.array([0, 5]),
        feature=np.array([0, 0, 1, 0, 0, 1, 0, 0]), threshold=np.array([0.5, 0, 2.0, 0, 0, 0.0, 0, 0]),
        left=np.array([1, 0, 3, 0, 0, 6, 0, 0]), right=np.array([2, 0, 4, 0, 0, 7, 0, 0]),
        missing_left=np.array([False, False, False, False, False, True, False, False]),
        is_leaf=np.array([False, True, False, True, True, False, True, True]),
        value=np.array([0, 1.0, 0, 2.0, 3.0, 0, -1.0, 0.5]), encoder_hash="enc", info={"top": 30})


def test_kernel_and_reference_give_the_hand_computed_values() -> None:
    trees = _two_trees()
    feats = {"a": np.array([0.1, 0.9, 0.9, np.nan, 0.5]), "b": np.array([5.0, 1.0, 3.0, np.nan, -1.0])}
    expected = 0.25 + np.array([1.0 + 0.5, 2.0 + 0.5, 3.0 + 0.5, 3.0 - 1.0, 1.0 - 1.0])
    assert np.allclose(trees.predict(feats), expected)
    assert np.allclose(trees.predict_reference(feats), expected)
    assert trees.predict({"a": np.zeros(0), "b": np.zeros(0)}).shape == (0,)
    with pytest.raises(KeyError, match="needs features"):
        trees.predict({"a": np.zeros(3)})


def test_json_round_trip_and_refusals(tmp_path: Path) -> None:
    trees = _two_trees()
    trees.save(tmp_path / "test_trees.json")
    back = load_trees("test_trees", "enc", directory=tmp_path)
    assert back is not None and back.features == trees.features and back.info == {"top": 30}
    x = {"a": np.linspace(-1, 2, 50), "b": np.linspace(-3, 4, 50)}
    assert np.array_equal(back.predict(x), trees.predict(x))
    assert back.content_sha() == trees.content_sha()  # what a scale fitted on the trees' output refers to
    assert dataclasses.replace(trees, value=trees.value + 0.1).content_sha() != trees.content_sha()
    assert load_trees("test_trees", "another-encoder", directory=tmp_path) is None
    assert load_trees("absent", "enc", directory=tmp_path) is None
    text = (tmp_path / "test_trees.json").read_text().replace('"format": 1', '"format": 99')
    (tmp_path / "test_trees.json").write_text(text)
    with pytest.raises(IncompatibleArtifactError, match="format 99"):
        load_trees("test_trees", "enc", directory=tmp_path)
    with pytest.raises(IncompatibleArtifactError, match="points outside"):
        dataclasses.replace(trees, left=np.array([1, 0, 30, 0, 0, 6, 0, 0]))
    with pytest.raises(IncompatibleArtifactError, match="different lengths"):
        dataclasses.replace(trees, value=np.zeros(3))


def test_converted_sklearn_regressor_predicts_as_sklearn() -> None:
    ensemble = pytest.importorskip("sklearn.ensemble")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the learned side
    y = np.nan_to_num(x[:, 0]) * 2 + (np.nan_to_num(x[:, 1]) > 0.3) - np.abs(np.nan_to_num(x[:, 2])) \
        + rng.normal(scale=0.1, size=3000)
    model = ensemble.HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)
    names = ("f0", "f1", "f2", "f3")
    trees = from_sklearn(model, "converted", names, encoder_hash="enc")
    test = rng.normal(size=(500, 4))
    test[rng.random(test.shape) < 0.1] = np.nan
    feats = {n: test[:, i] for i, n in enumerate(names)}
    assert trees.n_trees == model.n_iter_
    assert np.allclose(trees.predict(feats), model.predict(test), atol=1e-9)
    assert np.allclose(trees.predict_reference(feats), model.predict(test), atol=1e-9)
    with pytest.raises(Exception, match="feature names"):
        from_sklearn(model, "converted", names[:3])
