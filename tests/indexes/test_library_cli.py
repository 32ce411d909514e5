from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from engine.commands.cli import main
from engine.core.errors import IncompatibleArtifactError
from engine.core.records import Tolerance
from engine.jobs.library import build_library
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from indexes.library import Library


def write_mgf(path: Path, table: pa.Table) -> Path:
    with open(path, "w") as fh:
        for r in table.to_pylist():
            fh.write(f"BEGIN IONS\nTITLE={r['spectrum_id']}\nPEPMASS={r['precursor_mz']}\nIONMODE={r['ion_mode']}\n"
                     f"NAME={r['name']}\nSMILES={r['smiles']}\nINCHIKEY={r['inchikey']}\n")
            fh.write("".join(f"{m} {i}\n" for m, i in zip(r["mz"], r["intensity"], strict=True)))
            fh.write("END IONS\n\n")
    return path


@pytest.fixture()
def mgfs(sample_table: pa.Table, tmp_path: Path) -> tuple[Path, Path]:
    return (write_mgf(tmp_path / "a.mgf", sample_table.slice(0, 150)),
            write_mgf(tmp_path / "b.mgf", sample_table.slice(100)))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_library_build_cli_incremental_and_search(mgfs: tuple[Path, Path], sample_table: pa.Table,
                                                  tmp_path: Path) -> None:
    lib = str(tmp_path / "lib")
    code, out = run("library", "build", str(mgfs[0]), "--out", lib, "--fixed-embedder", "--quiet")
    assert code == 0, out
    assert "150 spectra (150 new" in out
    code, out = run("library", "build", str(mgfs[0]), "--out", lib, "--fixed-embedder", "--quiet")
    assert code == 0 and "150 spectra (0 new" in out  # unchanged file skipped
    code, out = run("library", "build", str(mgfs[1]), "--out", lib, "--fixed-embedder", "--quiet")
    assert code == 0 and "214 spectra (64 new, 50 already present) and 214 decoys (64 new)" in out, out
    code, out = run("index", "info", lib)
    info = json.loads(out)
    assert info["rows"] == 428 and info["index"]["rows"] == 428  # every spectrum and its decoy
    assert {p["ion_mode"] for p in info["index"]["partitions"]} == {"positive", "negative"}
    # a library spectrum finds itself first within 10 ppm of its precursor, with cosine 1
    library = Library.open(lib)
    rows = library.table.take_keys(sample_table.column("spectrum_id").to_pylist()[:5],
                                   ["spectrum_id", "precursor_mz", "ion_mode", "embedding"])
    q = np.stack(rows.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    hits = library.search(q, top_k=3, mass=rows.column("precursor_mz").to_numpy(),
                          tolerance=Tolerance(10, "ppm"), ion_mode=rows.column("ion_mode").to_pylist())
    top = hits.filter(pa.compute.equal(hits.column("rank"), 1))
    assert top.column("spectrum_id").to_pylist() == rows.column("spectrum_id").to_pylist()
    np.testing.assert_allclose(top.column("score").to_numpy(), 1.0, atol=1e-5)
    code, out = run("index", "retrain", lib, "--all", "--quiet")
    assert code == 0 and "rebuilt" in out
    code, out = run("library", "info", lib)
    assert json.loads(out)["index"]["rows"] == 428 and json.loads(out)["decoys"] == 214


def test_library_refuses_another_model(mgfs: tuple[Path, Path], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    build_library([mgfs[0]], lib, FixedSpectrumEmbedder(dim=16), progress=False)
    code, out = run("library", "build", str(mgfs[1]), "--out", str(lib), "--fixed-embedder", "--quiet")
    assert code == 1 and "16-dimensional" in out and "Traceback" not in out


def test_library_build_strict_and_skip(sample_table: pa.Table, tmp_path: Path) -> None:
    bad = write_mgf(tmp_path / "bad.mgf", sample_table.slice(0, 3))
    text = bad.read_text().replace("PEPMASS=", "PEPMASS_X=", 1)
    bad.write_text(text)
    code, out = run("library", "build", str(bad), "--out", str(tmp_path / "l1"), "--fixed-embedder", "--quiet")
    assert code == 1 and "bad.mgf" in out and "precursor" in out
    code, out = run("library", "build", str(bad), "--out", str(tmp_path / "l2"), "--fixed-embedder", "--quiet",
                    "--on-invalid", "skip")
    assert code == 0 and "2 spectra" in out and "missing_precursor: 1" in out


def test_build_and_ingest_refuse_inputs_without_spectrum_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt.bak").write_text("not a spectrum file")
    for args in (("library", "build", str(empty), "--out", str(tmp_path / "lib"), "--fixed-embedder", "--quiet"),
                 ("ingest", str(empty), "--out", str(tmp_path / "store"), "--quiet")):
        code, out = run(*args)
        assert code == 1 and "no spectrum files found" in out and str(empty) in out and "Traceback" not in out
    assert not (tmp_path / "store" / "spectra.lance").exists()


def test_molecules_build_cli(sample_table: pa.Table, tmp_path: Path) -> None:
    smi = tmp_path / "m.smi"
    rows = sample_table.select(["smiles", "name"]).to_pylist()
    smi.write_text("".join(f"{r['smiles']} {r['name']}\n" for r in rows) + "C1CC(broken bad\n")
    csv = tmp_path / "m.csv"
    csv.write_text("smiles,name\nCCO,ethanol\nc1ccccc1O,phenol\n")
    moldb = str(tmp_path / "mol")
    code, out = run("molecules", "build", str(smi), "--out", moldb, "--fixed-embedder", "--quiet")
    assert code == 1 and "m.smi" in out and "cannot be parsed" in out
    code, out = run("molecules", "build", str(smi), str(csv), "--out", moldb, "--fixed-embedder", "--quiet",
                    "--on-invalid", "skip")
    n_struct = len(set(sample_table.column("inchikey").to_pylist()))
    assert code == 0 and f"{n_struct + 2} structures" in out and "invalid_smiles: 1" in out, out
    db = Library.open(moldb)
    assert db.layout.key_column == "inchikey"
    ethanol = db.table.take_keys(["LFQSCWFLJHTTHZ-UHFFFAOYSA-N"], ["inchikey", "monoisotopic_mass", "embedding"])
    assert ethanol.num_rows == 1
    mass = ethanol.column("monoisotopic_mass").to_numpy()
    assert mass[0] == pytest.approx(46.0419, abs=1e-3)
    q = np.stack(ethanol.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    hits = db.search(q, top_k=1, mass=mass, tolerance=Tolerance(5, "ppm"))
    assert hits.column("inchikey").to_pylist() == ["LFQSCWFLJHTTHZ-UHFFFAOYSA-N"]


def test_every_command_has_help() -> None:
    for group in ("library", "molecules", "index"):
        code, out = run(group, "--help")
        assert code == 0 and "Usage" in out
        cmd = main.get_command(None, group)  # type: ignore[arg-type]
        for name, sub in cmd.commands.items():  # type: ignore[attr-defined]
            assert sub.help, f"{group} {name} has no help"


def test_index_update_and_retrain_cli(mgfs: tuple[Path, Path], sample_table: pa.Table, tmp_path: Path) -> None:
    from engine.core.records import Spectrum
    from engine.core.schema import spectra_to_batch
    from indexes.library import with_embeddings

    lib_path = tmp_path / "lib"
    emb = FixedSpectrumEmbedder()
    build_library([mgfs[0]], lib_path, emb, progress=False, decoys=False)
    lib = Library.open(lib_path)
    # rows appended to the table behind the index's back: the index refuses until updated
    extra = [Spectrum(spectrum_id=f"extra-{i}", mz=np.array([100.0 + i, 200.0]), intensity=np.ones(2, np.float32),
                      precursor_mz=300.0 + i, ion_mode="positive", source_file="x") for i in range(5)]
    batch = spectra_to_batch(extra)
    e, qual = emb.embed_spectra(batch)
    assert lib.add(with_embeddings(batch, e, qual)) == 5
    with pytest.raises(IncompatibleArtifactError, match="engine index update"):
        Library.open(lib_path).index()
    code, out = run("index", "update", str(lib_path), "--quiet")
    assert code == 0 and "155 rows indexed" in out, out
    code, out = run("index", "retrain", str(lib_path), "--partition", "positive-000", "--quiet")
    assert code == 0 and "retrained 1 partitions (positive-000)" in out, out
    info = Library.open(lib_path).info()["index"]
    pos = next(p for p in info["partitions"] if p["name"] == "positive-000")
    assert pos["stale"] is None
    hits = Library.open(lib_path).search(e[:1], top_k=1, mass=[300.0], tolerance=Tolerance(1, "ppm"))
    assert hits.column("spectrum_id").to_pylist() == ["extra-0"]


def test_search_cli_reports_skipped_records(mgfs: tuple[Path, Path], tmp_path: Path) -> None:
    lib = str(tmp_path / "lib")
    assert run("library", "build", str(mgfs[0]), "--out", lib, "--fixed-embedder", "--quiet")[0] == 0
    queries = tmp_path / "q.mgf"
    queries.write_text(mgfs[0].read_text().split("END IONS", 2)[0] + "END IONS\n"
                       + "BEGIN IONS\nTITLE=broken\nPEPMASS=abc\n100.0 5\nEND IONS\n")
    rejects = tmp_path / "rejects.parquet"
    code, out = run("search", str(queries), "--library", lib, "--fixed-embedder", "--quiet", "--on-invalid", "skip",
                    "--out", str(tmp_path / "hits.parquet"), "--report", str(rejects))
    assert code == 0 and "1 query spectra (1 skipped)" in out and "skipped parse_error: 1" in out, out
    rows = pq.read_table(rejects).to_pylist()
    assert len(rows) == 1 and rows[0]["reason"] == "parse_error" and "broken" in rows[0]["record"]
