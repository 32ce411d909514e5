"""The Parquet reader: the engine's own spectrum files and MassBank-style tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reader_helpers import MASSBANK, spectra_and_errors

from engine.core.errors import FileFormatError, IncompatibleArtifactError
from engine.core.records import Spectrum
from engine.core.schema import SCHEMA_VERSION_KEY, SPECTRUM_SCHEMA, spectra_to_batch
from engine.io.readers import read_file
from engine.io.readers.mgf import read_mgf
from engine.io.readers.parquet import read_parquet
from engine.io.writers import write_spectra


def _same(a: Spectrum, b: Spectrum) -> None:
    for field in dataclasses.fields(Spectrum):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), field.name
        else:
            assert x == y, field.name


def test_engine_schema_round_trip(tmp_path: Path) -> None:
    spectra = [s for s in read_mgf(MASSBANK / "massbank.mgf") if isinstance(s, Spectrum)]
    path = tmp_path / "spectra.parquet"
    assert write_spectra(spectra, path, batch_size=7) == 40
    back, errors = spectra_and_errors(read_parquet(path, batch_size=9))
    assert not errors and len(back) == 40
    for a, b in zip(spectra, back, strict=True):
        _same(a, b)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    batch = spectra_to_batch([s for s in read_mgf(MASSBANK / "massbank.mgf")][:2])  # type: ignore[misc]
    schema = SPECTRUM_SCHEMA.with_metadata({SCHEMA_VERSION_KEY: b"999"})
    path = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_batches([batch]).cast(schema), path)
    with pytest.raises(IncompatibleArtifactError, match="schema version 999"):
        list(read_parquet(path))


def test_massbank_table_is_mapped_by_column_names() -> None:
    source = pq.read_table(MASSBANK / "massbank.parquet").to_pylist()
    spectra, errors = spectra_and_errors(read_file(MASSBANK / "massbank.parquet"))
    assert not errors and len(spectra) == len(source) == 40
    for s, rec in zip(spectra, source, strict=True):
        assert s.spectrum_id == rec["spectrum_id"]
        assert (s.precursor_mz, s.charge, s.ion_mode, s.adduct, s.smiles, s.inchikey, s.formula, s.name) == (
            rec["precursor_mz"], rec["charge"], rec["ion_mode"], rec["adduct"], rec["smiles"], rec["inchikey"],
            rec["formula"], rec["name"])
        np.testing.assert_array_equal(s.mz, rec["mz"])
        np.testing.assert_array_equal(s.intensity, np.asarray(rec["intensity"], np.float32))
        assert s.metadata["license"] == rec["license"] and s.metadata["contributor"] == rec["contributor"]
        assert s.metadata["exact_mass"] == repr(rec["exact_mass"])
        assert s.retention_time is None  # a text column ("3.44", "0.325 min") stays in metadata
        if rec["retention_time"] is not None:
            assert s.metadata["retention_time"] == rec["retention_time"]


def test_foreign_table_with_dataset_and_ms_levels(tmp_path: Path) -> None:
    table = pa.table({"MZ": [[100.0, 200.0], [50.0]], "Intensity": [[1.0, 2.0], [3.0]],
                      "precursor_mz": [300.0, 400.0], "ms_level": [2, 1], "Polarity": ["Positive", "n"],
                      "retention_time": [12.5, 3.0], "extra": [True, False]})
    path = tmp_path / "user.parquet"
    pq.write_table(table, path)
    (s,) = read_parquet(path, dataset="MSV000084630")
    assert isinstance(s, Spectrum)
    assert s.spectrum_id == "mzspec:MSV000084630:user:index:0"
    assert (s.ion_mode, s.retention_time, s.metadata) == ("positive", 12.5, {"extra": "true"})


def test_tables_that_are_not_spectra(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"mz": [[1.0]], "intensity": [[1.0]]}), path)
    with pytest.raises(FileFormatError, match="no column precursor_mz"):
        list(read_parquet(path))
    pq.write_table(pa.table({"mz": [1.0], "intensity": [1.0], "precursor_mz": [1.0]}), path)
    with pytest.raises(FileFormatError, match="not a list"):
        list(read_parquet(path))
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty file"):
        list(read_parquet(path))
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(FileFormatError, match="not a Parquet file"):
        list(read_parquet(path))
