"""``engine embed spectra|molecules`` through click's CliRunner, and the library functions behind them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from engine.commands.cli import main
from engine.core.errors import InvalidMoleculeError
from engine.core.schema import batch_to_spectra
from engine.io.writers.mgf import write_mgf
from engine.models.embed import embed_molecule_file, embed_spectra_files
from engine.models.encoders.molecule import MoleculeEncoderConfig
from engine.models.encoders.spectrum import SpectrumEncoderConfig
from engine.models.model import JointModel, ModelConfig
from engine.models.quality import QualityConfig
from engine.models.training.data import massbank_batch

FIXTURE = Path(__file__).resolve().parent / "data" / "model" / "massbank_tiny.parquet"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(dim=16, spectrum=SpectrumEncoderConfig(bag_dim=16, hidden_dims=(16,)),
                         molecule=MoleculeEncoderConfig(hidden_dim=16, n_layers=2, head_dim=16),
                         quality=QualityConfig(n_reference=16, k=4))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    JointModel(config).save(path)
    return path


@pytest.fixture(scope="module")
def mgf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spectra") / "tiny.mgf"
    write_mgf(batch_to_spectra(massbank_batch(pq.read_table(FIXTURE))), path)
    return path


def test_embed_spectra_cli(tmp_path: Path, model_path: Path, mgf: Path) -> None:
    out = tmp_path / "emb.parquet"
    result = CliRunner().invoke(main, ["embed", "spectra", str(mgf), "--out", str(out), "--model", str(model_path)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    n = pq.read_metadata(FIXTURE).num_rows
    assert table.num_rows == n
    assert {"spectrum_id", "embedding", "quality", "precursor_mz", "ion_mode"} <= set(table.column_names)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    expected_ids = pq.read_table(FIXTURE, columns=["spectrum_id"]).column("spectrum_id").to_pylist()
    assert sorted(table.column("spectrum_id").to_pylist()) == sorted(expected_ids)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    meta = table.schema.metadata
    assert meta[b"engine.dim"] == b"16" and len(meta[b"engine.encoder_hash"]) == 32


def test_embed_spectra_matches_library(tmp_path: Path, model_path: Path, mgf: Path) -> None:
    from engine.models.model import load_model

    model = load_model(model_path)
    res = embed_spectra_files([mgf], tmp_path / "a.parquet", model=model, batch_size=5)
    table = pq.read_table(res.out)
    direct, quality = model.embed_spectra(massbank_batch(pq.read_table(FIXTURE)))
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    # MGF keeps the peaks (float repr) so the vectors agree closely
    np.testing.assert_allclose(emb, direct, atol=1e-4)
    np.testing.assert_allclose(table.column("quality").to_numpy(), quality, atol=1e-4)


def test_embed_molecules_cli_formats(tmp_path: Path, model_path: Path) -> None:
    smi = tmp_path / "mols.smi"
    smi.write_text("smiles id\nCCO ethanol\nc1ccccc1O phenol\n")
    csv = tmp_path / "mols.csv"
    csv.write_text("name,SMILES,score\nethanol,CCO,1\nphenol,c1ccccc1O,2\n")
    pqf = tmp_path / "mols.parquet"
    pq.write_table(pa.table({"smiles": ["CCO", "c1ccccc1O"], "key": [7, 8]}), pqf)
    sdf = tmp_path / "mols.sdf"
    from rdkit import Chem

    with Chem.SDWriter(str(sdf)) as w:
        for name, s in (("ethanol", "CCO"), ("phenol", "c1ccccc1O")):
            m = Chem.MolFromSmiles(s)
            m.SetProp("_Name", name)
            w.write(m)
    vectors = []
    for path, id_col, ids in ((smi, "id", ["ethanol", "phenol"]), (csv, "name", ["ethanol", "phenol"]),
                              (pqf, "key", [7, 8]), (sdf, "id", ["ethanol", "phenol"])):
        out = tmp_path / f"{path.suffix[1:]}.parquet"
        result = CliRunner().invoke(main, ["embed", "molecules", str(path), "--out", str(out),
                                           "--model", str(model_path)])
        assert result.exit_code == 0, result.output
        table = pq.read_table(out)
        assert table.column(id_col).to_pylist() == ids
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
        vectors.append(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)))
    assert pq.read_table(tmp_path / "smi.parquet").column("smiles").to_pylist() == ["CCO", "c1ccccc1O"]
    for v in vectors[1:]:
        np.testing.assert_allclose(v, vectors[0], atol=1e-5)


def test_embed_molecules_invalid(tmp_path: Path, model_path: Path) -> None:
    smi = tmp_path / "bad.smi"
    smi.write_text("CCO a\nC1CC b\nCCN c\n")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["embed", "molecules", str(smi), "--out", str(out), "--model", str(model_path)])
    assert result.exit_code != 0
    assert "bad.smi" in result.output and "line 2" in result.output and "C1CC" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["embed", "molecules", str(smi), "--out", str(out), "--model", str(model_path),
                                       "--on-invalid", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped: 1" in result.output
    assert pq.read_table(out).column("id").to_pylist() == ["a", "c"]
    from engine.models.model import load_model

    with pytest.raises(InvalidMoleculeError, match="line 2"):
        embed_molecule_file(smi, tmp_path / "x.parquet", model=load_model(model_path))
