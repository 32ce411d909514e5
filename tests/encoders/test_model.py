"""The joint model: embeddings, quality, invalid SMILES, checkpoint round trip and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from engine.core.errors import IncompatibleArtifactError, InvalidMoleculeError
from engine.core.schema import SCHEMA_VERSION, batch_to_spectra, spectra_to_batch
from engine.models.checkpoint import FORMAT_VERSION, load_checkpoint
from engine.models.encoders.base import MoleculeEmbedder, SpectrumEmbedder
from engine.models.encoders.molecule import MoleculeEncoderConfig
from engine.models.encoders.spectrum import SpectrumEncoderConfig
from engine.models.model import DEFAULT_MODEL, JointModel, ModelConfig, load_model
from engine.models.quality import QualityConfig
from engine.models.training.data import massbank_batch

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "model" / "massbank_tiny.parquet"


def small_model(dim: int = 16, seed: int = 0) -> JointModel:
    torch.manual_seed(seed)
    config = ModelConfig(dim=dim, spectrum=SpectrumEncoderConfig(bag_dim=16, hidden_dims=(16,)),
                         molecule=MoleculeEncoderConfig(hidden_dim=16, n_layers=2, head_dim=16),
                         quality=QualityConfig(n_reference=16, k=4))
    return JointModel(config).eval()


@pytest.fixture(scope="module")
def batch():  # type: ignore[no-untyped-def]
    return massbank_batch(pq.read_table(FIXTURE))


def test_protocols_and_shapes(batch) -> None:  # type: ignore[no-untyped-def]
    model = small_model()
    assert isinstance(model, SpectrumEmbedder) and isinstance(model, MoleculeEmbedder)
    emb, quality = model.embed_spectra(batch, batch_size=7)
    assert emb.shape == (batch.num_rows, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert quality.dtype == np.float32 and ((quality >= 0) & (quality <= 1)).all()
    again, _ = model.embed_spectra(batch, batch_size=1024)
    np.testing.assert_allclose(emb, again, rtol=1e-5, atol=1e-6)   # deterministic, batch size free


def test_embedding_a_training_model_uses_eval_mode_and_restores_it(batch) -> None:  # type: ignore[no-untyped-def]
    model = small_model()
    want, want_q = model.embed_spectra(batch)
    model.train()  # dropout and batch statistics must not reach embeddings made mid-training
    got, got_q = model.embed_spectra(batch)
    assert model.training and all(m.training for m in model.modules())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_q, want_q, rtol=1e-5, atol=1e-6)
    model.eval()
    model.embed_spectra(batch)
    assert not any(m.training for m in model.modules())


def test_cross_mode_input(batch) -> None:  # type: ignore[no-untyped-def]
    model = small_model()
    spectra = list(batch_to_spectra(batch))[:3]
    from dataclasses import replace

    flipped = [replace(s, ion_mode="negative" if s.ion_mode == "positive" else "positive") for s in spectra]
    mixed = spectra_to_batch(spectra + flipped)
    emb, _ = model.embed_spectra(mixed)
    assert np.isfinite(emb).all()
    # ion mode is an input: the same peaks in the other mode give another (but finite) vector
    assert not np.allclose(emb[:3], emb[3:])


def test_smiles_embedding_and_invalid() -> None:
    model = small_model()
    emb = model.embed_smiles(["CCO", "c1ccccc1O", "CCO"])
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], rtol=1e-5)
    with pytest.raises(InvalidMoleculeError, match="C1CC"):
        model.embed_smiles(["CCO", "C1CC"])
    result = model.embed_molecules(["CCO", "C1CC", "nonsense", "CCN"], on_invalid="skip")
    assert result.valid.tolist() == [True, False, False, True]
    assert result.skipped == [(1, "C1CC"), (2, "nonsense")]
    assert result.embeddings.shape == (2, 16)
    np.testing.assert_allclose(result.embeddings[0], emb[0], rtol=1e-5)
    assert model.embed_smiles(["C1CC"], on_invalid="skip").shape == (0, 16)


def test_checkpoint_round_trip(tmp_path: Path, batch) -> None:  # type: ignore[no-untyped-def]
    model = small_model()
    digest = model.save(tmp_path / "m.pt", half=False)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.encoder_hash == digest and loaded.dim == 16
    assert loaded.pipeline == model.pipeline and loaded.config == model.config
    np.testing.assert_array_equal(model.embed_spectra(batch)[0], loaded.embed_spectra(batch)[0])
    # float16 storage: close, and a different hash
    half = model.save(tmp_path / "h.pt", half=True)
    assert half != digest
    np.testing.assert_allclose(load_model(tmp_path / "h.pt").embed_smiles(["CCO"]), model.embed_smiles(["CCO"]),
                               atol=5e-3)


def _rewrite(src: Path, dst: Path, change) -> None:  # type: ignore[no-untyped-def]
    payload = torch.load(src, weights_only=True)
    change(payload)
    torch.save(payload, dst)


def test_checkpoint_refusals(tmp_path: Path) -> None:
    src = tmp_path / "m.pt"
    small_model().save(src)

    def tamper(p):  # type: ignore[no-untyped-def]
        p["state_dict"]["spectrum_encoder.mlp.3.weight"][0, 0] += 1

    cases = {
        "tampered": (tamper, "content hash mismatch"),
        "version": (lambda p: p.update(format_version=FORMAT_VERSION + 1), "format version"),
        "schema": (lambda p: p.update(schema_version=SCHEMA_VERSION + 1), "schema version"),
        "format": (lambda p: p.update(format="something.else"), "not an engine model"),
    }
    for name, (change, message) in cases.items():
        _rewrite(src, tmp_path / f"{name}.pt", change)
        with pytest.raises(IncompatibleArtifactError, match=message):
            load_model(tmp_path / f"{name}.pt")
    # another dimension in the config than in the weights (hash recomputed so only the shape is wrong)
    other = small_model(dim=32)
    other.save(tmp_path / "other.pt")
    payload = torch.load(tmp_path / "other.pt", weights_only=True)
    payload["state_dict"] = torch.load(src, weights_only=True)["state_dict"]
    from engine.models.checkpoint import content_hash

    payload["content_hash"] = content_hash(payload["state_dict"], {k: payload[k] for k in (
        "format", "format_version", "schema_version", "config", "pipeline")})
    torch.save(payload, tmp_path / "dim.pt")
    with pytest.raises(IncompatibleArtifactError, match="does not match"):
        load_model(tmp_path / "dim.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(IncompatibleArtifactError, match="not a readable"):
        load_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(IncompatibleArtifactError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_bundled_default_model(batch) -> None:  # type: ignore[no-untyped-def]
    model = load_model(DEFAULT_MODEL)
    assert DEFAULT_MODEL.stat().st_size < 25 * 2**20
    assert model.dim == model.config.dim and len(model.encoder_hash) == 32
    emb, quality = model.embed_spectra(batch)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)
    assert ((quality >= 0) & (quality <= 1)).all()
    assert set(model.extra["training"]["licenses"]) <= {"CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0"}
    # spectra of one structure sit closer to its molecule than to the others' (on this small set)
    smiles = sorted(set(batch.column("smiles").to_pylist()))
    mol = model.embed_smiles(smiles)
    true = np.array([smiles.index(s) for s in batch.column("smiles").to_pylist()])
    ranks = (emb @ mol.T >= (emb * mol[true]).sum(1, keepdims=True)).sum(1)
    assert (ranks <= 3).mean() > 0.5
