"""Repository lookups on a small index: identity windows (across ion modes by two protons), analogue,
stored vectors by USI, structures, settings checks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.core.errors import InvalidInputError, InvalidMoleculeError
from engine.queries.lookup import (
    PROTON,
    LookupSettings,
    StoredVectors,
    UnknownSpectrumError,
    lookup_embeddings,
    lookup_structures,
    lookup_usis,
    usi_dataset,
)
from indexes.vector_index import VectorIndex, build_vector_index

DIM = 8


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> VectorIndex:
    rng = np.random.default_rng(0)
    n = 60
    vec = rng.normal(size=(n, DIM)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    mass = 100.0 + np.arange(n) * 5.0
    modes = np.where(np.arange(n) % 3 == 0, "negative", "positive")
    # row 1 (positive) is the [M+H]+ of the molecule whose [M-H]- is row 0
    vec[1] = vec[0]
    mass[1] = mass[0] + 2 * PROTON
    keys = [f"mzspec:MSV00000000{i % 2}:f:scan:{i}" for i in range(n)]
    light = pa.table({"row_id": np.arange(n, dtype=np.int64), "key": keys, "mass": mass, "ion_mode": modes,
                      "quality": np.ones(n, np.float32)})

    def emb() -> list[pa.RecordBatch]:
        return [pa.RecordBatch.from_arrays([pa.array(np.arange(n, dtype=np.int64)),
                                            pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), DIM)],
                                           names=["row_id", "embedding"])]

    out = tmp_path_factory.mktemp("idx")
    build_vector_index(out, light, emb, dim=DIM, encoder_hash="h", table="spectra", key_column="spectrum_id",
                       mass_column="precursor_mz", table_rows=n)
    return VectorIndex.open(out)


def test_identity_keeps_the_window_and_crosses_modes_by_two_protons(index: VectorIndex) -> None:
    stored = StoredVectors(index)
    emb, mass, modes = stored.get(["mzspec:MSV000000000:f:scan:0"])
    assert modes == ["negative"] and mass[0] == 100.0
    same = lookup_embeddings(index, emb, mass, modes, ["q"], LookupSettings(mode="identity", top_k=5))
    assert same.column("usi").to_pylist() == ["mzspec:MSV000000000:f:scan:0"]
    cross = lookup_embeddings(index, emb, mass, modes, ["q"],
                              LookupSettings(mode="identity", top_k=5, cross_mode=True))
    got = dict(zip(cross.column("usi").to_pylist(), cross.column("ion_mode").to_pylist(), strict=True))
    assert got == {"mzspec:MSV000000000:f:scan:0": "negative", "mzspec:MSV000000001:f:scan:1": "positive"}
    row = cross.filter(pa.compute.equal(cross.column("ion_mode"), "positive")).to_pylist()[0]
    assert row["mass_difference"] == pytest.approx(2 * PROTON) and row["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert row["dataset"] == "MSV000000001"


def test_analogue_ranks_by_predicted_tanimoto_within_top_k(index: VectorIndex) -> None:
    stored = StoredVectors(index)
    hits = lookup_usis(["mzspec:MSV000000000:f:scan:4"], stored, LookupSettings(top_k=7))
    assert hits.num_rows == 7 and hits.column("rank").to_pylist() == list(range(1, 8))
    pred = hits.column("predicted_tanimoto").to_numpy()
    assert (np.diff(pred) <= 1e-7).all() and set(hits.column("ion_mode").to_pylist()) == {"positive"}
    window = lookup_usis(["mzspec:MSV000000000:f:scan:4"], stored, LookupSettings(top_k=50, max_mass_difference=12))
    assert (np.abs(window.column("mass_difference").to_numpy()) <= 12).all() and window.num_rows < 50
    with pytest.raises(UnknownSpectrumError, match="scan:999"):
        lookup_usis(["mzspec:MSV000000001:f:scan:999"], stored, LookupSettings())


def test_stored_vectors_hashed_in_chunks_find_every_usi(index: VectorIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.queries.lookup.HASH_CHUNK_ROWS", 7)  # many chunks per partition
    stored = StoredVectors(index)
    usis = [f"mzspec:MSV00000000{i % 2}:f:scan:{i}" for i in range(60)]
    emb, mass, modes = stored.get(usis)
    assert mass == pytest.approx([100.0 + 2 * PROTON if i == 1 else 100.0 + i * 5.0 for i in range(60)])
    assert modes == ["negative" if i % 3 == 0 else "positive" for i in range(60)]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_structures_need_parsable_smiles(index: VectorIndex) -> None:
    class Model:
        def embed_smiles(self, smiles: list[str]) -> np.ndarray:
            return np.ones((len(smiles), DIM), np.float32)

    hits = lookup_structures(["CCO"], index, Model(), LookupSettings(top_k=3))
    assert hits.num_rows == 3 and hits.column("query_id").to_pylist() == ["CCO"] * 3
    ident = lookup_structures(["CCO"], index, Model(), LookupSettings(mode="identity", adducts=("[M+H]+",)))
    assert ident.num_rows == 0  # no spectrum at ethanol's [M+H]+ m/z
    with pytest.raises(InvalidMoleculeError, match="SMILES"):
        lookup_structures(["C1CC("], index, Model(), LookupSettings())


@pytest.mark.parametrize("kwargs", [{"mode": "fuzzy"}, {"top_k": 0}, {"top_k": 10_000},
                                    {"precursor_tolerance_ppm": -1}, {"max_mass_difference": 0},
                                    {"adducts": ("[M+Xx]+",)}])
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        LookupSettings(**kwargs)  # type: ignore[arg-type]


def test_usi_dataset() -> None:
    assert usi_dataset("mzspec:MSV000084630:run:scan:3") == "MSV000084630"
    assert usi_dataset("plain-id") is None
