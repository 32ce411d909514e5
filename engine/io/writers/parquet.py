"""Write record batches of the engine's spectrum schema to one Parquet file."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.fsutil import atomic_path
from engine.core.records import Spectrum
from engine.core.schema import SPECTRUM_SCHEMA, spectra_to_batch

BATCH_SIZE = 8192


def write_spectra_parquet(batches: Iterable[pa.RecordBatch], path: str | Path, *,
                          schema: pa.Schema = SPECTRUM_SCHEMA,
                          compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd") -> int:
    """Stream ``batches`` into a Parquet file at ``path`` (atomically); return the number of rows.

    Every batch must have the columns and types of ``schema`` (default :data:`SPECTRUM_SCHEMA`); the
    file carries the schema's metadata, schema version included, so the reader can check it.
    """
    path = Path(path)
    rows = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression=compression) as writer:
        for batch in batches:
            if not batch.schema.equals(schema, check_metadata=False):
                raise ValueError(f"batch schema differs from the spectrum schema:\n{batch.schema}\n"
                                 f"expected:\n{schema}")
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def write_spectra(spectra: Iterable[Spectrum], path: str | Path, *, batch_size: int = BATCH_SIZE) -> int:
    """Convert spectra to batches of ``batch_size`` and write them with :func:`write_spectra_parquet`."""

    def batches() -> Iterable[pa.RecordBatch]:
        iterator = iter(spectra)
        while chunk := list(islice(iterator, batch_size)):
            yield spectra_to_batch(chunk)

    return write_spectra_parquet(batches(), path)
