"""Gzip-compressed spectrum files (``.mgf.gz``, ``.msp.gz``, ``.mzML.gz``, ``.mzXML.gz``) read as their plain copies."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from reader_helpers import DIALECTS, LOCAL_RAW, MASSBANK, spectra_and_errors

from engine.core.errors import FileFormatError
from engine.core.records import Spectrum
from engine.io.inputs import expand_inputs
from engine.io.readers import format_of, is_spectrum_file, read_file

PLAIN = [MASSBANK / "massbank.mgf", MASSBANK / "massbank.msp", DIALECTS / "nist.msp",
         LOCAL_RAW / "SiriusAdapter_4_input.mzML", LOCAL_RAW / "synthetic_profile_numpress.mzML",
         LOCAL_RAW / "matchms_testdata.mzXML"]


def _gzip(path: Path, folder: Path) -> Path:
    out = folder / (path.name + ".gz")
    with open(path, "rb") as src, gzip.open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


@pytest.mark.parametrize("plain", PLAIN, ids=lambda p: p.name)
def test_gzipped_file_reads_as_its_plain_copy(plain: Path, tmp_path: Path) -> None:
    packed = _gzip(plain, tmp_path)
    assert format_of(packed) == format_of(plain)
    ours, errors = spectra_and_errors(read_file(packed))
    reference, ref_errors = spectra_and_errors(read_file(plain))
    assert len(ours) == len(reference) > 0 and len(errors) == len(ref_errors)
    for a, b in zip(ours, reference, strict=True):
        assert isinstance(a, Spectrum)
        assert a.spectrum_id.replace(packed.name, plain.name) == b.spectrum_id
        assert (a.precursor_mz, a.charge, a.ion_mode, a.retention_time, a.metadata) == (
            b.precursor_mz, b.charge, b.ion_mode, b.retention_time, b.metadata)
        np.testing.assert_array_equal(a.mz, b.mz)
        np.testing.assert_array_equal(a.intensity, b.intensity)


def test_directories_pick_up_gzipped_spectrum_files_only(tmp_path: Path) -> None:
    _gzip(MASSBANK / "massbank.mgf", tmp_path)
    _gzip(LOCAL_RAW / "matchms_testdata.mzML", tmp_path)
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(b"not spectra"))
    (tmp_path / "table.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    assert sorted(p.name for p in expand_inputs([tmp_path])) == ["massbank.mgf.gz", "matchms_testdata.mzML.gz"]
    assert not is_spectrum_file("table.parquet.gz") and is_spectrum_file("RUN.MZXML.GZ")
    with pytest.raises(FileFormatError, match=r"unsupported compressed file type '\.parquet\.gz'"):
        format_of("table.parquet.gz")


@pytest.mark.parametrize("name", ["massbank.mgf", "matchms_testdata.mzML"])
def test_corrupt_or_truncated_gzip_is_a_file_error_naming_the_file(name: str, tmp_path: Path) -> None:
    plain = (MASSBANK if name.endswith(".mgf") else LOCAL_RAW) / name
    packed = _gzip(plain, tmp_path).read_bytes()
    truncated = tmp_path / ("cut_" + name + ".gz")
    truncated.write_bytes(packed[: len(packed) // 2])
    garbage = tmp_path / ("garbage_" + name + ".gz")
    garbage.write_bytes(b"this is not gzip at all\n" * 10)
    for path in (truncated, garbage):
        with pytest.raises(FileFormatError) as info:
            list(read_file(path))
        assert info.value.path == str(path) and info.value.reason == "file_error"
