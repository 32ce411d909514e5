"""MGF -> Parquet -> MGF round trips are lossless; the writer handles what MGF cannot hold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from engine.core.records import Spectrum
from engine.io.readers import read_file
from engine.io.readers.mgf import read_mgf
from engine.io.readers.parquet import read_parquet
from engine.io.writers import write_mgf, write_spectra
from engine.io.writers.mgf import format_spectrum

DATA = Path(__file__).resolve().parents[1] / "data"
SOURCES = [DATA / "massbank" / "massbank.mgf", *sorted((DATA / "dialects").glob("*.mgf")),
           DATA / "massbank" / "massbank.msp", DATA / "dialects" / "nist.msp",
           DATA / "raw" / "matchms_testdata.mzML", DATA / "raw" / "matchms_testdata.mzXML",
           DATA / "raw" / "synthetic_profile_numpress.mzML"]


def _spectra(path: Path) -> list[Spectrum]:
    items = list(read_file(path))
    assert all(isinstance(s, Spectrum) for s in items)
    return items  # type: ignore[return-value]


def _assert_same(a: Spectrum, b: Spectrum) -> None:
    for field in dataclasses.fields(Spectrum):
        if field.name == "source_file":  # on reading, the file being read
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), (a.spectrum_id, field.name)
        else:
            assert x == y, (a.spectrum_id, field.name, x, y)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_round_trip_through_parquet_and_mgf_is_lossless(tmp_path: Path, source: Path) -> None:
    first = _spectra(source)
    parquet = tmp_path / "spectra.parquet"
    write_spectra(first, parquet)
    mgf = tmp_path / "again.mgf"
    assert write_mgf(read_parquet(parquet), mgf) == len(first)  # type: ignore[arg-type]
    again = _spectra(mgf)
    assert len(again) == len(first)
    for a, b in zip(first, again, strict=True):
        _assert_same(a, b)
    # and a second MGF generation is byte-identical to the first
    mgf2 = tmp_path / "again2.mgf"
    write_mgf(again, mgf2)
    assert mgf2.read_bytes() == mgf.read_bytes()


def test_mgf_text_of_a_massbank_record() -> None:
    (s, *_) = _spectra(DATA / "massbank" / "massbank.mgf")
    text = format_spectrum(s)
    lines = text.splitlines()
    assert lines[0] == "BEGIN IONS" and lines[1] == f"TITLE={s.spectrum_id}"
    assert f"PEPMASS={s.precursor_mz!r}" in lines and "CHARGE=1+" in lines and "IONMODE=positive" in lines
    assert f"LICENSE={s.metadata['LICENSE']}" in lines
    assert lines[-2] == "END IONS" and text.endswith("END IONS\n\n")


def test_values_mgf_cannot_hold(tmp_path: Path) -> None:
    s = Spectrum(spectrum_id="x", mz=np.array([100.0, 200.25]), intensity=np.array([1.5, 3e-7], np.float32),
                 precursor_mz=300.0, charge=-2, ion_mode="negative",
                 metadata={"note": "two\nlines", "a=b": "c", "precursor_intensity": "5e5", "TITLE": "old"})
    path = tmp_path / "x.mgf"
    write_mgf([s], path)
    (back,) = read_mgf(path)
    assert isinstance(back, Spectrum)
    assert back.charge == -2 and back.spectrum_id == "x"
    assert back.metadata == {"note": "two lines", "a_b": "c", "precursor_intensity": "5e5"}
    np.testing.assert_array_equal(back.intensity, s.intensity)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> object:
        yield from _spectra(DATA / "dialects" / "gnps.mgf")
        raise RuntimeError("source failed")

    path = tmp_path / "out.mgf"
    with pytest.raises(RuntimeError):
        write_mgf(broken(), path)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
