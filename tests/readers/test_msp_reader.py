"""The MSP reader on real MassBank records in MassBank, NIST and MS-DIAL layouts, and on broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from reader_helpers import DIALECTS, MASSBANK, spectra_and_errors

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.io.readers.msp import read_msp


def _reference() -> dict[str, dict]:
    return {r["spectrum_id"]: r for r in pq.read_table(MASSBANK / "massbank.parquet").to_pylist()}


def test_massbank_msp_matches_its_source() -> None:
    source = _reference()
    spectra, errors = spectra_and_errors(read_msp(MASSBANK / "massbank.msp"))
    assert not errors
    assert [s.spectrum_id for s in spectra] == list(source)  # DB#
    for s in spectra:
        rec = source[s.spectrum_id]
        assert (s.name, s.precursor_mz, s.ion_mode, s.adduct, s.inchikey, s.formula) == (
            rec["name"], rec["precursor_mz"], rec["ion_mode"], rec["adduct"], rec["inchikey"], rec["formula"])
        np.testing.assert_array_equal(s.mz, np.asarray(rec["mz"]))
        np.testing.assert_array_equal(s.intensity, np.asarray(rec["intensity"], dtype=np.float32))
        assert f"license={rec['license']}" in s.metadata["Comments"]
        assert s.metadata["Spectrum_type"] == "MS2" and s.metadata["Instrument_type"] == rec["instrument_type"]
    negative = [s for s in spectra if s.ion_mode == "negative"]
    assert len(negative) == 20


def test_msp_usis_by_index() -> None:
    spectra = list(read_msp(MASSBANK / "massbank.msp", dataset="MSV000084630"))
    assert spectra[3].spectrum_id == "mzspec:MSV000084630:massbank:index:3"  # type: ignore[union-attr]
    assert spectra[3].metadata["DB#"].startswith("MSBNK-")  # type: ignore[union-attr]


def test_nist_layout_pairs_and_annotations() -> None:
    source = _reference()
    spectra, errors = spectra_and_errors(read_msp(DIALECTS / "nist.msp"))
    assert not errors and len(spectra) == 3
    for s in spectra:
        rec = source[s.spectrum_id]  # ID
        np.testing.assert_array_equal(s.mz, np.asarray(rec["mz"]))  # "mz int;" pairs and quoted annotations
        np.testing.assert_array_equal(s.intensity, np.asarray(rec["intensity"], dtype=np.float32))
        assert s.metadata["Synon"] == f"{rec['spectrum_id']}; $:00in-source"  # repeated key kept
        assert s.adduct == rec["adduct"]


def test_msdial_layout() -> None:
    source = {r["name"]: r for r in _reference().values()}
    spectra, errors = spectra_and_errors(read_msp(DIALECTS / "msdial.msp"))
    assert not errors and len(spectra) == 3
    assert [s.spectrum_id for s in spectra] == [f"msdial.msp:index={i}" for i in range(3)]
    assert [s.ion_mode for s in spectra] == ["positive", "positive", "negative"]
    for s in spectra:
        rec = source[s.name]
        assert s.smiles == rec["smiles"] and s.precursor_mz == rec["precursor_mz"]
        assert s.retention_time is not None and s.metadata["Comment"] == rec["spectrum_id"]
        assert "Ontology" in s.metadata  # empty value kept
        np.testing.assert_array_equal(s.mz, np.asarray(rec["mz"]))


def test_msdial_retention_time_is_minutes(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_text("NAME: a\nPRECURSORMZ: 100\nRETENTIONTIME: 2.5\nNum Peaks: 1\n50 1\n\n"
                    "Name: b\nPrecursorMZ: 100\nRTINSECONDS: 30\nNum Peaks: 1\n50 1\n")
    a, b = read_msp(path)
    assert (a.retention_time, b.retention_time) == (150.0, 30.0)  # type: ignore[union-attr]


def test_records_without_blank_lines_and_chunking(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_text("Name: a\nPrecursorMZ: 100\nNum Peaks: 2\n50 1\n60 2\n"
                    "Name: b\nPrecursorMZ: 200\nNum Peaks: 1\n70\t3\n")
    whole = list(read_msp(path))
    assert [s.name for s in whole] == ["a", "b"]  # type: ignore[union-attr]
    small = list(read_msp(path, chunk_bytes=16))
    assert [(s.name, s.mz.tolist()) for s in small] == [(s.name, s.mz.tolist()) for s in whole]  # type: ignore


def test_peak_count_mismatch_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_text("Name: truncated\nPrecursorMZ: 100\nNum Peaks: 3\n50 1\n60 2\n\n"
                    "Name: ok\nPrecursorMZ: 100\nNum Peaks: 1\n50 1\n")
    items = list(read_msp(path))
    assert isinstance(items[0], InvalidRecordError) and items[0].reason == "parse_error"
    assert "Num Peaks says 3 but 2" in str(items[0]) and "'truncated'" in str(items[0])
    assert isinstance(items[1], Spectrum)


def test_bad_peak_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_text("Name: bad\nPrecursorMZ: 100\nNum Peaks: 2\n50 1\n60 x\n\nName: ok\nPrecursorMZ: 1\n"
                    "Num Peaks: 1\n50 1\n")
    items = list(read_msp(path))
    assert isinstance(items[0], InvalidRecordError) and "line 5" in str(items[0])
    assert isinstance(items[1], Spectrum)


def test_ms1_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_text("Name: ms1\nSpectrum_type: MS1\nNum Peaks: 1\n50 1\n\nName: ms2\nSpectrum_type: MS2\n"
                    "PrecursorMZ: 1\nNum Peaks: 1\n50 1\n")
    assert [s.name for s in read_msp(path)] == ["ms2"]  # type: ignore[union-attr]


def test_non_utf8_byte(tmp_path: Path) -> None:
    path = tmp_path / "x.msp"
    path.write_bytes(b"Name: Caf\xe9\nPrecursorMZ: 1\nNum Peaks: 1\n50 1\n\nName: ok\nPrecursorMZ: 1\n"
                     b"Num Peaks: 1\n50 1\n")
    items = list(read_msp(path))
    assert isinstance(items[0], InvalidRecordError) and "line 1" in str(items[0]) and "0xE9" in str(items[0])
    assert isinstance(items[1], Spectrum)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b'<?xml version="1.0"?>\n<mzML>\n', "not an MSP file"),
    (b"\x00\x01\x02", "binary"),
    (b"\n\n\n", "no records"),
])
def test_unreadable_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.msp"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        list(read_msp(path))
