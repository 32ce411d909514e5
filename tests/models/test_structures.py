"""One molecule-file reader: every format gives the same ``smiles`` / ``id`` / ``_record`` columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core.errors import FileFormatError
from engine.models.rdkit_util import parse_smiles
from engine.models.structures import RECORD, structure_chunks


def _rows(path: Path, **kw: int) -> list[dict[str, object]]:
    return [row for t in structure_chunks(path, **kw) for row in t.to_pylist()]


def test_every_format_names_smiles_and_records(tmp_path: Path) -> None:
    from rdkit import Chem

    (tmp_path / "m.smi").write_text("# comment\nSMILES id\nCCO ethanol\n\nc1ccccc1O\n")
    assert _rows(tmp_path / "m.smi") == [{"smiles": "CCO", "id": "ethanol", RECORD: "line 3"},
                                         {"smiles": "c1ccccc1O", "id": None, RECORD: "line 5"}]
    (tmp_path / "m.tsv").write_text("Name\tIsomeric_SMILES\nethanol\tCCO\n")
    assert _rows(tmp_path / "m.tsv") == [{"Name": "ethanol", "smiles": "CCO", RECORD: "line 2"}]
    pq.write_table(pa.table({"canonical_smiles": ["CCO", "CO", "C"], "key": [1, 2, 3]}), tmp_path / "m.parquet")
    chunks = list(structure_chunks(tmp_path / "m.parquet", chunk_rows=2))
    assert [t.num_rows for t in chunks] == [2, 1]
    assert chunks[1].to_pylist() == [{"smiles": "C", "key": 3, RECORD: "row 3"}]
    with Chem.SDWriter(str(tmp_path / "m.sdf")) as w:
        mol = Chem.MolFromSmiles("OC(=O)C")
        mol.SetProp("_Name", "acetic acid")
        w.write(mol)
    assert _rows(tmp_path / "m.sdf") == [{"smiles": "CC(=O)O", "id": "acetic acid", RECORD: "record 1"}]


def test_refusals(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("name,mass\nx,1\n")
    with pytest.raises(FileFormatError, match="no 'smiles' column"):
        _rows(tmp_path / "m.csv")
    with pytest.raises(FileFormatError, match="unsupported"):
        _rows(tmp_path / "m.xyz")
    with pytest.raises(FileFormatError, match="not found"):
        _rows(tmp_path / "missing.smi")


def test_parse_smiles() -> None:
    assert parse_smiles("CCO").GetNumAtoms() == 3
    assert parse_smiles("C1CC((") is None and parse_smiles("") is None and parse_smiles(None) is None
    assert parse_smiles("CCO", max_length=2) is None
