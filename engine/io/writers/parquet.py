"""Write record batches of the engine's spectrum schema to one Parquet file."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.fsutil import atomic_path
from engine.core.records import Spectrum
from engine.core.schema import SPECTRUM_SCHEMA, spectra_to_batch

BATCH_SIZE = 8192


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: strings and binaries (identifiers, names, SMILES repeat). Float
    columns and lists (embeddings, peaks) are left plain: dictionary encoding only costs time there
    (2.5x the write time of an annotate result part, for a larger file)."""
    def repeats(t: pa.DataType) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                    or pa.types.is_dictionary(t) or pa.types.is_boolean(t))

    return [f.name for f in schema if repeats(f.type)]


Compression = Literal["zstd", "snappy", "gzip", "lz4", "none"]


def table_bytes(table: pa.Table, *, compression: Compression = "zstd") -> bytes:
    """``table`` as the bytes of one Parquet file (for atomic writes), dictionary encoding as
    :func:`dictionary_columns` says."""
    sink = pa.BufferOutputStream()
    dictionary: Any = dictionary_columns(table.schema)  # pyarrow takes a list of names; its stubs say bool
    pq.write_table(table, sink, compression=compression, use_dictionary=dictionary)
    return bytes(sink.getvalue().to_pybytes())


def parquet_writer(where: Any, schema: pa.Schema, *, compression: Compression = "snappy") -> pq.ParquetWriter:
    """A :class:`pyarrow.parquet.ParquetWriter` at ``where`` that dictionary-encodes as
    :func:`dictionary_columns` says."""
    dictionary: Any = dictionary_columns(schema)
    return pq.ParquetWriter(where, schema, compression=compression, use_dictionary=dictionary)


def write_spectra_parquet(batches: Iterable[pa.RecordBatch], path: str | Path, *,
                          schema: pa.Schema = SPECTRUM_SCHEMA,
                          compression: Compression = "zstd") -> int:
    """Stream ``batches`` into a Parquet file at ``path`` (atomically); return the number of rows.

    Every batch must have the columns and types of ``schema`` (default :data:`SPECTRUM_SCHEMA`); the
    file carries the schema's metadata, schema version included, so the reader can check it.
    """
    path = Path(path)
    rows = 0
    with atomic_path(path) as tmp, parquet_writer(tmp, schema, compression=compression) as writer:
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
