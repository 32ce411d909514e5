from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core.errors import FileFormatError, InvalidMoleculeError
from engine.jobs.molecules import complete, read_structures


def test_read_parquet_sdf_and_complete(tmp_path: Path) -> None:
    from rdkit import Chem

    pq.write_table(pa.table({"SMILES": ["CCO", "c1ccccc1"], "Name": ["ethanol", "benzene"]}), tmp_path / "m.parquet")
    rows = list(read_structures(tmp_path / "m.parquet"))
    assert rows == [{"smiles": "CCO", "name": "ethanol"}, {"smiles": "c1ccccc1", "name": "benzene"}]
    with Chem.SDWriter(str(tmp_path / "m.sdf")) as w:
        mol = Chem.MolFromSmiles("OC(=O)C")
        mol.SetProp("_Name", "acetic acid")
        w.write(mol)
    (sdf,) = list(read_structures(tmp_path / "m.sdf"))
    full = complete(sdf, where="m.sdf", record="1")
    assert full["inchikey"] == "QTBSBXVTEAMEQO-UHFFFAOYSA-N" and full["formula"] == "C2H4O2"
    assert full["monoisotopic_mass"] == pytest.approx(60.02113, abs=1e-4) and full["name"] == "acetic acid"
    given = {"smiles": "X", "inchikey": "K", "formula": "F", "monoisotopic_mass": 1.0}
    assert complete(given, where="x", record="1") is given  # prepared sets are used as given
    with pytest.raises(InvalidMoleculeError, match="cannot be parsed"):
        complete({"smiles": "C1CC(("}, where="x.smi", record="3")
    (tmp_path / "m.xyz").write_text("")
    with pytest.raises(FileFormatError):
        list(read_structures(tmp_path / "m.xyz"))
