"""Ingest into a real LanceDB store: streaming, idempotence, strict and skip modes, resume after a crash."""

from __future__ import annotations

from pathlib import Path

import lancedb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from engine.commands.cli import main
from engine.core.errors import InvalidRecordError
from engine.jobs.ingest import ingest

GOOD = """BEGIN IONS
TITLE=good-{i}
PEPMASS=301.1{i} 1000
CHARGE=1+
IONMODE=positive
{i}1.5 10
150.25 100
200.5 {i}5
END IONS
"""
BAD_NAN = """BEGIN IONS
TITLE=bad-nan
PEPMASS=300.0
CHARGE=1+
100.0 nan
END IONS
"""


def write(path: Path, n_good: int, bad: str = "") -> Path:
    text = "".join(GOOD.format(i=i) for i in range(1, n_good + 1))
    path.write_text(text + bad)
    return path


def rows(store: Path) -> list[str]:
    return sorted(lancedb.connect(str(store)).open_table("spectra").to_arrow().column("spectrum_id").to_pylist())


def test_ingest_and_reingest_does_not_duplicate(tmp_path: Path) -> None:
    mgf = write(tmp_path / "a.mgf", 3)
    store = tmp_path / "store"
    first = ingest([mgf], store, progress=False)
    assert first.report.kept == 3 and first.rows_in_table == 3
    again = ingest([tmp_path], store, progress=False)  # directory input, same file
    assert again.report.files_unchanged == 1 and again.rows_in_table == 3
    assert rows(store) == ["good-1", "good-2", "good-3"]
    table = lancedb.connect(str(store)).open_table("spectra").to_arrow()
    assert table.column("record_index").to_pylist() == [0, 1, 2]
    assert table.column("precursor_mz").to_pylist()[0] == pytest.approx(301.11)


def test_strict_mode_names_file_and_record_and_writes_nothing(tmp_path: Path) -> None:
    mgf = write(tmp_path / "bad.mgf", 2, BAD_NAN)
    with pytest.raises(InvalidRecordError) as info:
        ingest([mgf], tmp_path / "store", progress=False)
    assert "bad.mgf" in str(info.value) and "bad-nan" in str(info.value)
    assert info.value.reason == "non_finite_values"
    assert rows(tmp_path / "store") == []


def test_skip_mode_keeps_good_records_and_reports(tmp_path: Path) -> None:
    mgf = write(tmp_path / "bad.mgf", 2, BAD_NAN)
    report = tmp_path / "skipped.parquet"
    result = ingest([mgf], tmp_path / "store", on_invalid="skip", progress=False, report_path=report)
    assert result.report.kept == 2 and dict(result.report.skipped) == {"non_finite_values": 1}
    assert rows(tmp_path / "store") == ["good-1", "good-2"]
    skipped = pq.read_table(report).to_pylist()
    assert skipped[0]["reason"] == "non_finite_values" and skipped[0]["file"] == str(mgf)


def test_rows_of_an_interrupted_ingest_are_replaced(tmp_path: Path) -> None:
    """Rows committed without a ledger entry (crash between the two writes) are not duplicated."""
    mgf = write(tmp_path / "a.mgf", 3)
    store = tmp_path / "store"
    ingest([mgf], store, progress=False)
    db = lancedb.connect(str(store))
    db.open_table("ingested_files").delete("true")  # simulate the crash: data committed, ledger not
    result = ingest([mgf], store, progress=False)
    assert result.rows_in_table == 3 and result.report.files_unchanged == 0


def test_cli_ingest_strict_and_skip(tmp_path: Path) -> None:
    mgf = write(tmp_path / "bad.mgf", 2, BAD_NAN)
    runner = CliRunner()
    strict = runner.invoke(main, ["ingest", str(mgf), "--out", str(tmp_path / "s1"), "--quiet"])
    assert strict.exit_code != 0
    assert "bad.mgf" in strict.output and "bad-nan" in strict.output and "Traceback" not in strict.output
    skip = runner.invoke(main, ["ingest", str(mgf), "--out", str(tmp_path / "s2"), "--on-invalid", "skip",
                                "--quiet"])
    assert skip.exit_code == 0, skip.output
    assert "kept: 2" in skip.output and "non_finite_values: 1" in skip.output


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "nope.mgf"), "--out", str(tmp_path / "s")])
    assert result.exit_code != 0 and "no such file" in result.output


BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


def test_mixed_directory_skip_mode_counts_by_reason(tmp_path: Path) -> None:
    result = ingest([BAD / "mixed"], tmp_path / "store", on_invalid="skip", progress=False,
                    report_path=tmp_path / "r.parquet")
    assert result.report.kept == 13 == result.rows_in_table
    # empty.mgf and truncated.mzML fail as files; notes.txt is not a spectrum file and is not read.
    assert dict(result.report.skipped) == {"parse_error": 1, "file_error": 2}
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 3


@pytest.mark.parametrize("name", sorted(p.name for p in BAD.iterdir() if p.is_file() and p.suffix != ".md"))
def test_every_bad_file_fails_strict_with_its_name(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(main, ["ingest", str(BAD / name), "--out", str(tmp_path / "s"), "--quiet"])
    # every file of the corpus holds at least one record strict mode refuses (tests/data/bad/README.md)
    assert result.exit_code != 0, f"strict mode accepted {name}: {result.output}"
    assert name in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
