"""Candidate sets from the bundled molecule table, per-query lists, and PubChem's offline behaviour."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core.adducts import parse_adduct
from engine.core.errors import FileFormatError, InvalidRecordError, OfflineError
from engine.queries.candidates import (
    CandidateQuery,
    MoleculeTable,
    candidates_by_formula,
    candidates_by_mass,
    normalize_formula,
    read_candidate_lists,
    select_candidates,
)
from engine.queries.pubchem import PubChemClient, pubchem_candidates

BUNDLED = Path(__file__).resolve().parents[2] / "engine" / "data" / "candidates" / "molecules.parquet"


@pytest.fixture(scope="module")
def molecules() -> MoleculeTable:
    return MoleculeTable.open(BUNDLED)


def test_normalize_formula() -> None:
    assert normalize_formula("H12C6O6") == "C6H12O6"
    assert normalize_formula("[C5H12N]+") == "C5H12N"
    assert normalize_formula("C2H8N2+2") == "C2H8N2"
    assert normalize_formula("ClH") == "ClH"
    assert normalize_formula("C1H4") == "CH4"
    with pytest.raises(ValueError):
        normalize_formula("C6H12O6.HCl")


def test_by_formula_and_mass_find_the_true_structure(molecules: MoleculeTable, massbank_sample: pa.Table) -> None:
    rows = [r for r in massbank_sample.to_pylist() if r["adduct"] in ("[M+H]+", "[M-H]-")][:25]
    queries = [CandidateQuery(r["spectrum_id"], r["precursor_mz"], r["ion_mode"], r["adduct"], r["formula"])
               for r in rows]
    by_formula = candidates_by_formula(queries, molecules)
    by_mass = candidates_by_mass(queries, molecules, tolerance_ppm=20)
    for table in (by_formula, by_mass):
        assert table.column_names == ["query_id", "smiles", "inchikey", "formula", "monoisotopic_mass"]
        got = {(q, k) for q, k in zip(table["query_id"].to_pylist(), table["inchikey"].to_pylist(), strict=True)}
        found = sum((r["spectrum_id"], r["inchikey"]) in got for r in rows)
        assert found >= 0.8 * len(rows)  # the bundled set holds these redistributable structures
    formulas = set(by_formula["formula"].to_pylist())
    assert formulas <= {r["formula"] for r in rows}
    # every mass candidate is within the window of its query's neutral mass
    neutral = {q.query_id: q.neutral_mass() for q in queries}
    err = np.abs(np.array(by_mass["monoisotopic_mass"].to_pylist())
                 - np.array([neutral[q] for q in by_mass["query_id"].to_pylist()]))
    assert (err <= np.array([neutral[q] for q in by_mass["query_id"].to_pylist()]) * 20e-6 + 1e-9).all()


def test_neutral_mass_uses_adduct_or_ion_mode() -> None:
    mass = 180.06339
    plus_na = parse_adduct("[M+Na]+").mz_from_neutral(mass)
    assert CandidateQuery("q", plus_na, "positive", "[M+Na]+").neutral_mass() == pytest.approx(mass, abs=1e-6)
    minus_h = parse_adduct("[M-H]-").mz_from_neutral(mass)
    assert CandidateQuery("q", minus_h, "negative").neutral_mass() == pytest.approx(mass, abs=1e-6)
    with pytest.raises(InvalidRecordError, match="ion mode"):
        CandidateQuery("q", 181.0).neutral_mass()
    with pytest.raises(InvalidRecordError, match="precursor"):
        CandidateQuery("q", None, "positive").neutral_mass()


def test_missing_formula_is_a_clear_error(molecules: MoleculeTable) -> None:
    with pytest.raises(InvalidRecordError, match="--by mass"):
        select_candidates([CandidateQuery("q1", 181.07, "positive")], molecules, by="formula")


def test_nearest_by_mass(molecules: MoleculeTable) -> None:
    rows = molecules.nearest_by_mass(300.0, 16)
    masses = molecules.table.column("monoisotopic_mass").to_numpy()[rows]
    assert rows.shape == (16,)
    assert np.abs(masses - 300.0).max() < 5


def test_candidate_lists(tmp_path: Path) -> None:
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"query_id": ["a", "a", "b", "c"], "smiles": ["CCO", "CCN", "c1ccccc1", None],
                             "rank_hint": [1, 2, 3, 4]}), path)
    table = read_candidate_lists(path)
    assert table.num_rows == 3 and table["smiles"].to_pylist() == ["CCO", "CCN", "c1ccccc1"]
    assert table["inchikey"].null_count == 3
    assert read_candidate_lists(path, query_ids=["b"]).num_rows == 1
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "smiles": ["C"]}), bad)
    with pytest.raises(FileFormatError, match="query_id"):
        read_candidate_lists(bad)


def test_molecule_table_from_lancedb(tmp_path: Path) -> None:
    import lancedb

    db = lancedb.connect(str(tmp_path / "moldb"))
    db.create_table("molecules", pq.read_table(BUNDLED, columns=["inchikey", "smiles", "formula",
                                                                 "monoisotopic_mass", "name"]).slice(0, 500))
    table = MoleculeTable.open(tmp_path / "moldb")
    assert len(table) == 500
    formula = table.table["formula"][0].as_py()
    assert len(table.by_formula(formula)) >= 1


def test_pubchem_offline_is_fast_and_clear(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = PubChemClient(cache_path=tmp_path / "cache.sqlite", timeout_s=5)
    query = CandidateQuery("q", 181.0707, "positive", None, "C6H12O6")
    caplog.set_level(logging.DEBUG, logger="pubchempy")
    start = time.perf_counter()
    try:
        table = pubchem_candidates([query], client)
    except OfflineError as exc:  # this machine has no internet
        assert "use --candidates" in str(exc)
        assert client.offline
        # a second query does not wait again
        start2 = time.perf_counter()
        with pytest.raises(OfflineError):
            pubchem_candidates([query], client, by="mass")
        assert time.perf_counter() - start2 < 0.5
    else:  # online: real PubChem answered
        assert table.num_rows > 0 and set(table["formula"].to_pylist()) == {"C6H12O6"}
    assert time.perf_counter() - start < 10
    # pubchempy built PubChem's formula-search URL
    assert any("/compound/formula/C6H12O6/" in r.getMessage() for r in caplog.records)


def test_pubchem_deadline_on_a_silent_server(tmp_path: Path) -> None:
    threads_before = threading.active_count()   # other tests of the session may have left daemon threads
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts connections, never answers
    port = server.getsockname()[1]
    try:
        client = PubChemClient(cache_path=tmp_path / "c.sqlite", timeout_s=1.0,
                               api_base=f"http://127.0.0.1:{port}/rest/pug")
        url = client.mass_range_url(180.06339, 10.0)
        assert url.endswith("/compound/monoisotopic_mass/range/180.06159/180.06519/cids/JSON")
        start = time.perf_counter()
        with pytest.raises(OfflineError):
            client.by_mass(180.06339, tolerance_ppm=10.0)
        assert time.perf_counter() - start < 5.0   # the 1 s deadline, not pubchempy's own (much longer) wait
    finally:
        server.close()
    assert threading.active_count() <= threads_before + 2   # no thread piles up per request


def test_pubchem_cache_serves_offline(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    client = PubChemClient(cache_path=cache, api_base="http://127.0.0.1:9/rest/pug", timeout_s=1)
    client._store("formula:C2H6O", [{"smiles": "CCO", "inchikey": "LFQSCWFLJHTTHZ-UHFFFAOYSA-N",
                                     "formula": "C2H6O", "monoisotopic_mass": 46.0419, "cid": 702}])
    table = pubchem_candidates([CandidateQuery("q", 47.049, "positive", None, "OC2H6")],
                               PubChemClient(cache_path=cache, timeout_s=1))
    assert table["smiles"].to_pylist() == ["CCO"]
