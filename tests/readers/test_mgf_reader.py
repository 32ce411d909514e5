"""The MGF reader on real MassBank records, the dialect files and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from reader_helpers import DIALECTS, MASSBANK, spectra_and_errors

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.io.readers import read_file
from engine.io.readers.mgf import read_mgf


def _write(tmp_path: Path, text: str, name: str = "x.mgf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _record(*lines: str, peaks: tuple[str, ...] = ("100.0 10.0", "200.5 20.0")) -> str:
    return "\n".join(["BEGIN IONS", *lines, *peaks, "END IONS", ""])


def test_massbank_records_match_their_source() -> None:
    source = {r["spectrum_id"]: r for r in pq.read_table(MASSBANK / "massbank.parquet").to_pylist()}
    spectra, errors = spectra_and_errors(read_mgf(MASSBANK / "massbank.mgf"))
    assert not errors
    assert [s.spectrum_id for s in spectra] == list(source)
    for s in spectra:
        rec = source[s.spectrum_id]
        assert s.precursor_mz == rec["precursor_mz"]
        assert s.ion_mode == rec["ion_mode"]
        assert s.charge == (rec["charge"] or (1 if rec["ion_mode"] == "positive" else -1))
        assert (s.adduct, s.name, s.smiles, s.inchikey, s.formula) == (
            rec["adduct"], rec["name"], rec["smiles"], rec["inchikey"], rec["formula"])
        assert s.mz.dtype == np.float64 and s.intensity.dtype == np.float32
        np.testing.assert_array_equal(s.mz, np.asarray(rec["mz"]))
        np.testing.assert_array_equal(s.intensity, np.asarray(rec["intensity"], dtype=np.float32))
        assert s.metadata["LICENSE"] == rec["license"] and s.metadata["CONTRIBUTOR"] == rec["contributor"]
        assert s.collision_energy == rec["collision_energy"]
        try:
            minutes = float(rec["retention_time"])
        except (TypeError, ValueError):
            assert s.retention_time is None
        else:
            assert s.retention_time == pytest.approx(minutes * 60)
        assert s.source_file == str(MASSBANK / "massbank.mgf") and s.ms_level == 2


def test_dataset_gives_usis_and_keeps_the_title() -> None:
    spectra = list(read_mgf(MASSBANK / "massbank.mgf", dataset="MSV000084630"))
    assert spectra[0].spectrum_id == "mzspec:MSV000084630:massbank:index:0"  # type: ignore[union-attr]
    assert spectra[5].spectrum_id == "mzspec:MSV000084630:massbank:index:5"  # type: ignore[union-attr]
    assert spectra[0].metadata["TITLE"].startswith("MSBNK-")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="accession"):
        list(read_mgf(MASSBANK / "massbank.mgf", dataset="not-a-dataset"))


def test_usi_uses_scans(tmp_path: Path) -> None:
    path = _write(tmp_path, _record("SCANS=42", "PEPMASS=100"), "run_7.mgf")
    (s,) = read_mgf(path, dataset="MSV000084630")
    assert s.spectrum_id == "mzspec:MSV000084630:run_7:scan:42"  # type: ignore[union-attr]


def test_gnps_dialect() -> None:
    spectra, errors = spectra_and_errors(read_mgf(DIALECTS / "gnps.mgf"))
    assert not errors and len(spectra) == 3
    assert [s.scan for s in spectra] == [1, 2, 3]
    assert all(s.spectrum_id.startswith("MSBNK-") for s in spectra)  # SPECTRUMID
    assert [s.ion_mode for s in spectra] == ["positive", "positive", "negative"]
    assert spectra[2].charge == -1
    assert spectra[0].inchi is None  # INCHI=N/A
    assert spectra[0].metadata["SOURCE_INSTRUMENT"].startswith(" ")  # metadata values are kept as written
    assert spectra[0].metadata["TAGS"] == ""
    assert spectra[0].n_peaks > 4  # tab-separated peaks


def test_matchms_dialect_lower_case_keys() -> None:
    reference = {s.spectrum_id: s for s in read_mgf(MASSBANK / "massbank.mgf")}  # type: ignore[union-attr]
    spectra, errors = spectra_and_errors(read_mgf(DIALECTS / "matchms.mgf"))
    assert not errors and len(spectra) == 3
    for s in spectra:
        ref = reference[s.spectrum_id]
        assert s.precursor_mz == ref.precursor_mz and s.charge == ref.charge and s.ion_mode == ref.ion_mode
        assert (s.name, s.adduct, s.smiles, s.inchikey) == (ref.name, ref.adduct, ref.smiles, ref.inchikey)
        assert s.metadata["precursor_intensity"] == "10000.0"  # PEPMASS=<mz> <intensity>
        assert s.metadata["precursor_mz"] == repr(ref.precursor_mz)  # a lower-priority alias stays in metadata
        assert s.metadata["spectrum_id"] == s.spectrum_id
        np.testing.assert_array_equal(s.mz, ref.mz)


def test_massspecgym_dialect() -> None:
    spectra, errors = spectra_and_errors(read_mgf(DIALECTS / "massspecgym.mgf"))
    assert not errors and len(spectra) == 3
    assert all(s.spectrum_id.startswith("MSBNK-") for s in spectra)  # IDENTIFIER
    assert all(s.precursor_mz is not None and s.adduct for s in spectra)  # PRECURSOR_MZ, ADDUCT
    assert all(float(s.intensity.max()) == 1.0 for s in spectra)
    assert spectra[0].metadata["FOLD"] == "train"


def test_mzmine_dialect() -> None:
    spectra, errors = spectra_and_errors(read_mgf(DIALECTS / "mzmine.mgf"))
    assert not errors
    assert [s.spectrum_id for s in spectra] == [f"mzmine.mgf:scan={i}" for i in (1, 2, 3)]
    assert [s.metadata["FEATURE_ID"] for s in spectra] == ["1", "2", "3"]
    assert all(s.retention_time is not None and s.retention_time > 0 for s in spectra)


def test_sirius_dialect_skips_ms1_records() -> None:
    spectra, errors = spectra_and_errors(read_mgf(DIALECTS / "sirius.mgf"))
    assert not errors
    assert [s.spectrum_id for s in spectra] == [f"sirius.mgf:scan={100 + i}" for i in (1, 2, 3)]
    assert [s.charge for s in spectra] == [1, 1, -1]
    assert all(s.ms_level == 2 for s in spectra)


def test_feature_id_is_the_identifier_without_title_or_scans(tmp_path: Path) -> None:
    path = _write(tmp_path, _record("FEATURE_ID=12", "PEPMASS=100") + _record("PEPMASS=100"))
    a, b = read_mgf(path)
    assert a.spectrum_id == "x.mgf:feature_id=12"  # type: ignore[union-attr]
    assert b.spectrum_id == "x.mgf:index=1"  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "charge"), [("1+", 1), ("2-", -2), ("-1", -1), ("+1", 1), ("3", 3),
                                              ("0", 0), ("1+ ", 1), ("", None), ("2+ and 3+", None)])
def test_charge_spellings(tmp_path: Path, text: str, charge: int | None) -> None:
    (s,) = read_mgf(_write(tmp_path, _record("PEPMASS=100", f"CHARGE={text}")))
    assert isinstance(s, Spectrum) and s.charge == charge
    if text == "2+ and 3+":
        assert s.metadata["CHARGE"] == text


def test_keys_are_case_insensitive_and_aliases_rank(tmp_path: Path) -> None:
    text = _record("title=abc", "PepMass=301.5 1234.5", "Polarity=NEGATIVE", "precursortype=[M-H]-",
                   "Adduct=[M+Cl]-", "Compound_Name=thing", "Smiles=CCO", "inchi=InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3",
                   "FORMULA=C2H6O", "MsLevel=2", "scans=9", "Collision_Energy=20 eV", "custom key=custom = value")
    (s,) = read_mgf(_write(tmp_path, text))
    assert isinstance(s, Spectrum)
    assert (s.spectrum_id, s.precursor_mz, s.ion_mode, s.adduct, s.name, s.smiles, s.formula, s.scan) == (
        "abc", 301.5, "negative", "[M+Cl]-", "thing", "CCO", "C2H6O", 9)
    assert s.inchi == "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3"  # value with "=" kept whole
    assert s.collision_energy == "20 eV"
    assert s.metadata == {"precursortype": "[M-H]-", "custom key": "custom = value", "precursor_intensity": "1234.5"}


def test_spaces_around_keys_and_values(tmp_path: Path) -> None:
    (s,) = read_mgf(_write(tmp_path, _record(" TITLE = spaced ", "PEPMASS= 100.5 ", "SCANS = 7", "NOTE = kept ")))
    assert isinstance(s, Spectrum)
    assert (s.spectrum_id, s.precursor_mz, s.scan) == ("spaced", 100.5, 7)  # fields are stripped
    assert s.metadata == {"NOTE ": " kept "}  # metadata exactly as written


def test_unknown_ion_mode_is_kept_for_validation(tmp_path: Path) -> None:
    (s,) = read_mgf(_write(tmp_path, _record("PEPMASS=100", "IONMODE=sideways")))
    assert s.ion_mode == "sideways"  # type: ignore[union-attr]


@pytest.mark.parametrize(("line", "seconds"), [("RTINSECONDS=12.5", 12.5), ("RTINMINUTES=1.5", 90.0),
                                               ("RETENTIONTIME=7", 7.0), ("RTINSECONDS=", None)])
def test_retention_time_in_seconds(tmp_path: Path, line: str, seconds: float | None) -> None:
    (s,) = read_mgf(_write(tmp_path, _record("PEPMASS=100", line)))
    assert s.retention_time == seconds  # type: ignore[union-attr]


def test_retention_time_that_is_not_a_number_stays_in_metadata(tmp_path: Path) -> None:
    (s,) = read_mgf(_write(tmp_path, _record("PEPMASS=100", "RTINMINUTES=0.3 min")))
    assert s.retention_time is None and s.metadata["RTINMINUTES"] == "0.3 min"  # type: ignore[union-attr]


def test_peak_layouts(tmp_path: Path) -> None:
    text = (_record("TITLE=tab", peaks=("100.0\t10", "200.0\t20"))
            + _record("TITLE=third", peaks=("100.0 10 1+", "200.0 20 2+"))
            + _record("TITLE=spaces", peaks=("  100.0   10  ", "200.0 20", "", "300 nan"))
            + _record("TITLE=crlf").replace("\n", "\r\n"))
    spectra, errors = spectra_and_errors(read_mgf(_write(tmp_path, text)))
    assert not errors
    assert [s.spectrum_id for s in spectra] == ["tab", "third", "spaces", "crlf"]
    for s in spectra[:2]:
        np.testing.assert_array_equal(s.mz, [100.0, 200.0])
        np.testing.assert_array_equal(s.intensity, [10.0, 20.0])
    np.testing.assert_array_equal(spectra[2].mz, [100.0, 200.0, 300.0])
    assert np.isnan(spectra[2].intensity[2])  # NaN is read faithfully; validation refuses it


def test_global_parameters_and_comments(tmp_path: Path) -> None:
    text = "# exported by a tool\nCOM=library\nCHARGE=1+\n\n" + _record("TITLE=a", "PEPMASS=100") + \
        _record("TITLE=b", "PEPMASS=200", "CHARGE=2-")
    a, b = read_mgf(_write(tmp_path, text))
    assert (a.charge, b.charge) == (1, -2)  # type: ignore[union-attr]
    assert a.metadata["COM"] == "library"  # type: ignore[union-attr]


def test_fast_and_careful_paths_agree() -> None:
    """Tiny chunks send many records through the careful parser; results must not change."""
    def key(item: Spectrum | InvalidRecordError) -> tuple[object, ...]:
        if isinstance(item, InvalidRecordError):
            return ("error", item.reason, str(item))
        return (item.spectrum_id, item.precursor_mz, item.charge, item.ion_mode, item.adduct, item.scan,
                item.retention_time, item.metadata, item.mz.tobytes(), item.intensity.tobytes())

    for path in [MASSBANK / "massbank.mgf", *sorted(DIALECTS.glob("*.mgf"))]:
        whole = [key(x) for x in read_mgf(path)]
        for chunk_bytes in (64, 700, 5000):
            assert [key(x) for x in read_mgf(path, chunk_bytes=chunk_bytes)] == whole, (path, chunk_bytes)


def test_bad_peak_line_names_the_line(tmp_path: Path) -> None:
    text = _record("TITLE=good", "PEPMASS=100") + _record("TITLE=bad", "PEPMASS=100",
                                                          peaks=("100 1", "123.4 abc", "150 2"))
    items = list(read_mgf(_write(tmp_path, text)))
    assert isinstance(items[0], Spectrum)
    error = items[1]
    assert isinstance(error, InvalidRecordError) and error.reason == "parse_error"
    assert "line 11" in str(error) and "abc" in str(error) and "'bad'" in str(error)
    assert error.path == str(tmp_path / "x.mgf")


def test_missing_end_ions(tmp_path: Path) -> None:
    text = (_record("TITLE=a", "PEPMASS=100").replace("END IONS\n", "")
            + _record("TITLE=b", "PEPMASS=100") + "BEGIN IONS\nTITLE=c\nPEPMASS=1\n1 1\n")
    items = list(read_mgf(_write(tmp_path, text)))
    assert [type(i).__name__ for i in items] == ["InvalidRecordError", "Spectrum", "InvalidRecordError"]
    assert "no END IONS before the next BEGIN IONS at line 6" in str(items[0])
    assert "end of the file" in str(items[2]) and "line 12" in str(items[2])


@pytest.mark.parametrize("line", ["PEPMASS=abc", "CHARGE=two", "MSLEVEL=x"])
def test_unreadable_header_values(tmp_path: Path, line: str) -> None:
    items = list(read_mgf(_write(tmp_path, _record("TITLE=bad", line) + _record("TITLE=ok", "PEPMASS=1"))))
    assert isinstance(items[0], InvalidRecordError) and items[0].reason == "parse_error"
    assert isinstance(items[1], Spectrum)


def test_non_utf8_byte_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.mgf"
    path.write_bytes(_record("TITLE=ok", "PEPMASS=1").encode() + b"BEGIN IONS\nTITLE=bad\nNAME=Caf\xe9\n"
                     b"PEPMASS=1\n1 1\nEND IONS\n" + _record("TITLE=ok2", "PEPMASS=1").encode())
    items = list(read_mgf(path))
    assert [type(i).__name__ for i in items] == ["Spectrum", "InvalidRecordError", "Spectrum"]
    assert "line 9" in str(items[1]) and "0xE9" in str(items[1])


def test_text_outside_records(tmp_path: Path) -> None:
    text = _record("TITLE=a", "PEPMASS=1") + "TITLE=orphan\n1 2\n" + _record("TITLE=b", "PEPMASS=1")
    items = list(read_mgf(_write(tmp_path, text)))
    assert [type(i).__name__ for i in items] == ["Spectrum", "InvalidRecordError", "Spectrum"]
    assert "lines 7-8" in str(items[1])


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "binary"),
    (b'<?xml version="1.0"?>\n<mzML>\n', "not an MGF file"),
    (b"COM=only globals\n", "no BEGIN IONS"),
])
def test_unreadable_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.mgf"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as info:
        list(read_file(path))
    assert info.value.path == str(path) and info.value.reason == "file_error"


def test_records_before_a_failure_stay_yielded(tmp_path: Path) -> None:
    path = tmp_path / "x.mgf"
    path.write_text(_record("TITLE=a", "PEPMASS=1"))
    reader = read_mgf(path)
    assert isinstance(next(reader), Spectrum)
    assert list(reader) == []


def test_repeated_keys_and_changing_layouts(tmp_path: Path) -> None:
    text = (_record("TITLE=a", "PEPMASS=100", "X=1", "X=2") + _record("PEPMASS=200", "TITLE=b")
            + _record("PEPMASS=300", "TITLE=c") + _record("TITLE=d", "PEPMASS=400", "X=3"))
    path = _write(tmp_path, text)
    for chunk_bytes in (1 << 20, 40):
        spectra, errors = spectra_and_errors(read_mgf(path, chunk_bytes=chunk_bytes))
        assert not errors
        assert [(s.spectrum_id, s.precursor_mz, s.metadata) for s in spectra] == [
            ("a", 100.0, {"X": "2"}), ("b", 200.0, {}), ("c", 300.0, {}), ("d", 400.0, {"X": "3"})]
