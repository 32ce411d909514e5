"""The calibrated cosine -> Tanimoto map: monotone, per mode pairing, tied to its encoder, beats the raw cosine."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.models.calibration import CALIBRATION_DIR
from engine.models.tanimoto_map import (
    MAP_NAME,
    PAIRINGS,
    TanimotoMap,
    balanced_pairs,
    bin_of,
    fit_tanimoto_map,
    load_tanimoto_map,
    mode_pairing,
    positive_mask,
    predict_tanimoto,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = CALIBRATION_DIR / f"{MAP_NAME}.json"


def _bundled_hash() -> str:
    from engine.models.checkpoint import load_checkpoint
    from engine.models.model import DEFAULT_MODEL

    assert DEFAULT_MODEL.exists(), "the bundled model is missing"
    return str(load_checkpoint(DEFAULT_MODEL)["content_hash"])


def _unit(rng: np.random.Generator, n: int, dim: int = 8) -> npt.NDArray[np.float32]:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _toy_map(encoder_hash: str = "toy") -> TanimotoMap:
    """positive: identity on 0..1; negative: constant 0.5; cross: twice the cosine (capped at 1)."""
    return TanimotoMap(encoder_hash=encoder_hash,
                       cosine={"positive": (0.0, 1.0), "negative": (0.0, 1.0), "cross": (0.0, 0.5)},
                       tanimoto={"positive": (0.0, 1.0), "negative": (0.5, 0.5), "cross": (0.0, 1.0)})


def test_shipped_map_belongs_to_the_bundled_model_and_is_monotone() -> None:
    model_hash = _bundled_hash()
    tmap = TanimotoMap.from_json(SHIPPED.read_text())
    assert tmap.encoder_hash == model_hash, (
        f"{SHIPPED.name} was fitted for encoder {tmap.encoder_hash}, the bundled model is {model_hash}: "
        "run `python tools/fit_tanimoto_map.py`")
    assert load_tanimoto_map(model_hash) == tmap
    assert "train" in tmap.info["fitted_on"]
    grid = np.linspace(-1.0, 1.0, 2001)
    for k, name in enumerate(PAIRINGS):
        assert 8 <= len(tmap.cosine[name]) <= 64                      # a few dozen knots
        assert np.all(np.diff(tmap.cosine[name]) > 0)
        pred = tmap.apply(grid, np.full(grid.shape, k))
        assert np.all(np.diff(pred) >= 0), name
        assert pred.min() >= 0.0 and pred.max() <= 1.0
        assert pred[-1] - pred[0] > 0.5, name                         # informative, not flat
    # cross-mode cosines run lower for the same Tanimoto: the cross map lifts a high cosine more
    lifted = {name: float(tmap.apply(np.array([0.7]), np.array([k]))[0]) for k, name in enumerate(PAIRINGS)}
    assert lifted["cross"] > lifted["positive"]


def test_predictions_follow_the_mode_pairing() -> None:
    rng = np.random.default_rng(0)
    a, b = _unit(rng, 50), _unit(rng, 50)
    cos = np.einsum("ij,ij->i", a, b)
    tmap = _toy_map()
    pos = predict_tanimoto(a, b, "positive", "positive", "toy", tanimoto_map=tmap)
    neg = predict_tanimoto(a, b, "negative", "Negative", "toy", tanimoto_map=tmap)
    cross = predict_tanimoto(a, b, "positive", "negative", "toy", tanimoto_map=tmap)
    np.testing.assert_allclose(pos, np.clip(cos, 0, 1), atol=1e-6)
    np.testing.assert_allclose(neg, 0.5, atol=1e-6)
    np.testing.assert_allclose(cross, np.clip(2 * cos, 0, 1), atol=1e-6)
    # cross-mode is symmetric; booleans and per-pair arrays work; a missing mode counts as positive
    np.testing.assert_allclose(predict_tanimoto(a, b, False, True, "toy", tanimoto_map=tmap), cross)
    modes_a = np.where(np.arange(50) % 2 == 0, "positive", "negative")
    mixed = predict_tanimoto(a, b, modes_a, "negative", "toy", tanimoto_map=tmap)
    np.testing.assert_allclose(mixed, np.where(np.arange(50) % 2 == 0, cross, neg))
    np.testing.assert_allclose(predict_tanimoto(a, b, None, "positive", "toy", tanimoto_map=tmap), pos)
    # one query against many
    np.testing.assert_allclose(predict_tanimoto(a[0], b, "positive", "positive", "toy", tanimoto_map=tmap),
                               np.clip(b @ a[0], 0, 1), atol=1e-6)
    assert mode_pairing([True, False, True], [True, False, False]).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown ion mode"):
        positive_mask(["positive", "neutral"], 2)
    with pytest.raises(ValueError, match="expected 3"):
        positive_mask(["positive", "negative"], 3)


def test_another_encoder_hash_falls_back_to_the_clipped_cosine(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = _unit(rng, 40), _unit(rng, 40)
    clipped = np.clip(np.einsum("ij,ij->i", a, b), 0, 1)
    _toy_map("model-a").save(tmp_path / f"{MAP_NAME}.json")
    assert load_tanimoto_map("model-a", directory=tmp_path) == _toy_map("model-a")
    assert load_tanimoto_map("model-b", directory=tmp_path) is None
    assert load_tanimoto_map("model-a", directory=tmp_path / "empty") is None
    calibrated = predict_tanimoto(a, b, "positive", "negative", "model-a", directory=tmp_path)
    assert not np.allclose(calibrated, clipped)
    kwargs: dict[str, Any]
    for kwargs in ({"directory": tmp_path}, {"tanimoto_map": _toy_map("model-a")}):
        other = predict_tanimoto(a, b, "positive", "negative", "model-b", **kwargs)
        np.testing.assert_allclose(other, clipped, atol=1e-6)
    # the shipped map is ignored for another model too
    np.testing.assert_allclose(predict_tanimoto(a, b, "positive", "negative", "not-the-bundled-model"), clipped,
                               atol=1e-6)


def test_map_validation_and_json_round_trip(tmp_path: Path) -> None:
    tmap = _toy_map()
    assert TanimotoMap.from_json(tmap.to_json()) == tmap
    with pytest.raises(ValueError, match="must not decrease"):
        TanimotoMap("h", {p: (0.0, 1.0) for p in PAIRINGS}, {**{p: (0.0, 1.0) for p in PAIRINGS}, "cross": (1.0, 0.0)})
    with pytest.raises(ValueError, match="lacks"):
        TanimotoMap("h", {"positive": (0.0, 1.0)}, {"positive": (0.0, 1.0)})


def test_fit_is_monotone_and_balances_the_bins() -> None:
    rng = np.random.default_rng(2)
    # 20x more low-Tanimoto pairs than high ones; cosine = Tanimoto + noise, cross-mode shrunk by half
    tani = np.concatenate([rng.uniform(0, 0.3, 20_000), rng.uniform(0.3, 1.0, 1_000)])
    tani = np.tile(tani, 3)
    code = np.repeat(np.arange(3), tani.shape[0] // 3)
    cos = np.where(code == 2, 0.5, 1.0) * tani + rng.normal(0, 0.1, tani.shape[0])
    tmap = fit_tanimoto_map(cos, tani, code, encoder_hash="x", n_knots=24)
    grid = np.linspace(-0.3, 1.2, 400)
    for k, name in enumerate(PAIRINGS):
        assert len(tmap.cosine[name]) <= 24
        assert np.all(np.diff(tmap.apply(grid, np.full(grid.shape, k))) >= 0)
    # bin balance: a high cosine still maps to a high Tanimoto despite the low-Tanimoto majority
    assert tmap.apply(np.array([0.9]), np.array([0]))[0] > 0.8
    # the cross-mode map undoes the shrinkage
    assert tmap.apply(np.array([0.45]), np.array([2]))[0] > 0.75
    assert tmap.info["pairs_per_bin"]["positive"][0] > 10 * tmap.info["pairs_per_bin"]["positive"][9]


def test_balanced_pairs_respect_pairing_and_bins() -> None:
    rng = np.random.default_rng(3)
    n_struct = 12
    fp = rng.random((n_struct, 64)) < 0.3
    inter = fp.astype(np.float32) @ fp.T.astype(np.float32)
    tani = (inter / (fp.sum(1)[:, None] + fp.sum(1)[None, :] - inter)).astype(np.float32)
    struct = rng.integers(0, n_struct, 200)
    positive = rng.random(200) < 0.6
    pairs = balanced_pairs(struct, positive, tani, 50, np.random.default_rng(0))
    again = balanced_pairs(struct, positive, tani, 50, np.random.default_rng(0))
    for k, name in enumerate(PAIRINGS):
        a, b = pairs[name]
        np.testing.assert_array_equal(a, again[name][0])
        assert a.shape[0] > 0 and np.all(a != b)                       # no self-pairs
        assert np.all(mode_pairing(positive[a], positive[b]) == k)
        counts = np.bincount(bin_of(tani[struct[a], struct[b]]), minlength=10)
        assert counts.max() <= 50


def _held_out_library() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], list[str], str]:
    """Bundled-library spectra of structures the model never learned from (no library spectrum of the structure
    is in its TRAINING_RECORDS: in effect the library's val spectra)."""
    import lancedb
    import pyarrow.compute as pc

    library = ROOT / "engine" / "data" / "library"
    records = ROOT / "engine" / "data" / "model" / "TRAINING_RECORDS.tsv.gz"
    assert (library / "spectra.lance").exists() and records.exists(), "bundled library / training records missing"
    with gzip.open(records, "rt") as fh:
        trained = {line.split("\t", 1)[0] for line in fh}
    table: Any = (lancedb.connect(str(library)).open_table("spectra").to_lance()
             .to_table(columns=["spectrum_id", "smiles", "ion_mode", "embedding", "is_decoy"]))
    table = table.filter(pc.invert(table.column("is_decoy")))     # decoys have no structure
    ids, smiles = table.column("spectrum_id").to_pylist(), table.column("smiles").to_pylist()
    seen = {smi for sid, smi in zip(ids, smiles, strict=True) if sid in trained}
    keep = np.array([smi not in seen for smi in smiles])
    table = table.filter(keep).select(["smiles", "ion_mode", "embedding"])
    dim = table.schema.field("embedding").type.list_size
    emb = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(), np.float32).reshape(-1, dim)
    positive = np.asarray(table.column("ion_mode").to_pylist()) == "positive"
    encoder_hash = table.schema.metadata[b"engine.encoder_hash"].decode()
    return emb, positive, [str(v) for v in table.column("smiles").to_pylist()], encoder_hash


def _bin_mean_rmse(pred: npt.NDArray[np.float32], true: npt.NDArray[np.float32]) -> float:
    bins = bin_of(true)
    sse = np.bincount(bins, weights=(pred.astype(np.float64) - true) ** 2, minlength=10)
    n = np.bincount(bins, minlength=10)
    return float(np.mean(np.sqrt(sse[n > 0] / n[n > 0])))


@pytest.mark.slow
def test_calibrated_map_beats_the_raw_cosine_on_held_out_library_spectra() -> None:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    emb, positive, smiles, encoder_hash = _held_out_library()
    assert load_tanimoto_map(encoder_hash) is not None, \
        "the bundled library was embedded by another model than the shipped map's"
    assert emb.shape[0] > 500
    unique, struct = np.unique(np.asarray(smiles, dtype=str), return_inverse=True)
    gen = rdFingerprintGenerator.GetRDKitFPGenerator(fpSize=2048)
    fps = np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in unique]).astype(np.float32)
    inter = fps @ fps.T
    tani = (inter / (fps.sum(1)[:, None] + fps.sum(1)[None, :] - inter)).astype(np.float32)
    i, j = np.triu_indices(emb.shape[0], k=1)
    true = tani[struct[i], struct[j]]
    raw = np.clip((emb @ emb.T)[i, j], 0, 1)
    calibrated = np.concatenate([predict_tanimoto(emb[i[s:s + 200_000]], emb[j[s:s + 200_000]],
                                                  positive[i[s:s + 200_000]], positive[j[s:s + 200_000]],
                                                  encoder_hash)
                                 for s in range(0, i.shape[0], 200_000)])
    pairing = mode_pairing(positive[i], positive[j])
    for k, name in enumerate(PAIRINGS):     # the map's own unit; pooled, the gain is smaller on this sample
        sel = pairing == k
        assert _bin_mean_rmse(calibrated[sel], true[sel]) < _bin_mean_rmse(raw[sel], true[sel]) - 0.003, name
    assert _bin_mean_rmse(calibrated, true) < _bin_mean_rmse(raw, true)
