"""The spectrum Parquet writer: schema and version on disk, refusal of other schemas, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core.records import Spectrum
from engine.core.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, SPECTRUM_SCHEMA, spectra_to_batch
from engine.io.readers.mgf import read_mgf
from engine.io.readers.parquet import read_parquet
from engine.io.writers import write_spectra_parquet

MGF = Path(__file__).resolve().parents[1] / "data" / "massbank" / "massbank.mgf"


def _batches() -> list[pa.RecordBatch]:
    spectra = [s for s in read_mgf(MGF) if isinstance(s, Spectrum)]
    return [spectra_to_batch(spectra[:25]), spectra_to_batch(spectra[25:])]


def test_writes_schema_and_version(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    assert write_spectra_parquet(_batches(), path) == 40
    schema = pq.read_schema(path)
    assert schema.equals(SPECTRUM_SCHEMA, check_metadata=False)
    assert schema.metadata[SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION).encode()
    assert pq.ParquetFile(path).metadata.num_rows == 40
    assert sum(1 for _ in read_parquet(path)) == 40


def test_empty_input_gives_a_readable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert write_spectra_parquet([], path) == 0
    assert list(read_parquet(path)) == []


def test_other_schema_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    batch = _batches()[0].drop_columns(["inchi"])
    path = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match="schema differs"):
        write_spectra_parquet([batch], path)
    assert list(tmp_path.iterdir()) == []
