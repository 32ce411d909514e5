"""Streaming reader of spectrum Parquet files: the engine's own schema, or a library table by column names.

A file written by the engine (:data:`engine.core.schema.SPECTRUM_SCHEMA`, with its schema version in the
metadata) is checked with :func:`engine.core.schema.check_schema_version` and read back as it was written,
identifiers included. Any other Parquet file is accepted when it has the columns ``mz``,
``intensity`` (lists of numbers) and ``precursor_mz``, as in MassBank exports such as
``../shared/data/massbank/spectra.parquet``. Its columns are mapped by name (:data:`COLUMN_ALIASES`,
case-insensitive) and every other column goes to ``Spectrum.metadata`` as text, so that licence and
attribution columns travel with the spectra. There, the identifier is the ``spectrum_id`` column (else
``<file>:index=<row>``; a USI by row with a ``dataset``); rows whose ``ms_level`` is not 2 are skipped;
a ``retention_time`` column is taken as seconds when it is numeric and kept as text otherwise.

Rows are read in record batches of ``batch_size``, so memory stays flat for any file size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.io.readers.fields import optional_text, parse_ion_mode
from engine.io.readers.files import ReadItem
from engine.io.readers.identifiers import check_dataset, spectrum_identifier
from engine.io.readers.peaks import as_intensities

#: Spectrum field <- column names of foreign tables (lower case), highest priority first.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "spectrum_id": ("spectrum_id", "spectrumid", "identifier", "accession", "title"),
    "precursor_mz": ("precursor_mz", "precursormz", "pepmass"),
    "charge": ("charge", "precursor_charge"),
    "ion_mode": ("ion_mode", "ionmode", "polarity"),
    "adduct": ("adduct", "precursor_type", "precursortype"),
    "name": ("name", "compound_name"),
    "smiles": ("smiles",),
    "inchi": ("inchi",),
    "inchikey": ("inchikey", "inchi_key"),
    "formula": ("formula", "molecular_formula"),
    "collision_energy": ("collision_energy",),
    "retention_time": ("retention_time", "rtinseconds"),
    "ms_level": ("ms_level", "mslevel"),
    "scan": ("scan", "scans"),
    "native_id": ("native_id",),
}
REQUIRED = ("mz", "intensity", "precursor_mz")
BATCH_SIZE = 8192


def read_parquet(path: str | Path, *, dataset: str | None = None,
                 batch_size: int = BATCH_SIZE) -> Iterator[ReadItem]:
    """Stream the spectra of a Parquet file (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.core.schema import SCHEMA_VERSION_KEY, SPECTRUM_COLUMNS, batch_to_spectra, check_schema_version

    if dataset is not None:
        check_dataset(dataset)
    path_str = str(path)
    if Path(path).stat().st_size == 0:
        raise FileFormatError("empty file (0 bytes)", path=path_str, reason="file_error")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"not a Parquet file: {exc}", path=path_str, reason="file_error") from None
    schema = parquet.schema_arrow
    try:
        if SCHEMA_VERSION_KEY in (schema.metadata or {}):
            check_schema_version(schema, where=path_str)
            columns = [c for c in SPECTRUM_COLUMNS if c in schema.names]
            for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                yield from batch_to_spectra(batch)
            return
        mapping = _map_columns(schema, path_str)
        row = 0
        for batch in parquet.iter_batches(batch_size=batch_size):
            yield from _foreign_batch(batch, mapping, path_str, dataset, row)
            row += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise FileFormatError(f"cannot read the Parquet data: {exc}", path=path_str,
                              reason="file_error") from None


def _map_columns(schema: Any, path: str) -> dict[str, str]:
    """Field name -> column name for a foreign table; refuse one without the required columns."""
    import pyarrow as pa

    by_lower = {name.lower(): name for name in schema.names}
    missing = [c for c in REQUIRED if c not in by_lower]
    if missing:
        raise FileFormatError(f"not a spectrum table: no column {', '.join(missing)} (needs mz, intensity, "
                              f"precursor_mz; the engine's own files carry a schema version)", path=path,
                              reason="file_error")
    for column in ("mz", "intensity"):
        kind = schema.field(by_lower[column]).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
            raise FileFormatError(f"column {by_lower[column]!r} is {kind}, not a list of numbers", path=path,
                                  reason="file_error")
    mapping = {"mz": by_lower["mz"], "intensity": by_lower["intensity"]}
    for field, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_lower:
                mapping[field] = by_lower[alias]
                break
    if "retention_time" in mapping:
        kind = schema.field(mapping["retention_time"]).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            del mapping["retention_time"]  # text such as "3.44 min": kept in metadata
    return mapping


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _peaks(column: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)
    if column.offset or offsets[0]:
        values = values[offsets[0]:]
        offsets = offsets - offsets[0]
    return offsets, values


def _foreign_batch(batch: Any, mapping: dict[str, str], path: str, dataset: str | None,
                   first_row: int) -> Iterator[ReadItem]:
    n = batch.num_rows
    mz_off, mz_values = _peaks(batch.column(mapping["mz"]))
    in_off, in_values = _peaks(batch.column(mapping["intensity"]))
    mz_values = mz_values.astype(np.float64, copy=False)
    in_values = in_values if in_values.dtype == np.float32 else as_intensities(in_values)
    used = set(mapping.values())
    fields = {f: batch.column(c).to_pylist() for f, c in mapping.items() if f not in ("mz", "intensity")}
    extra = {name: batch.column(name).to_pylist() for name in batch.schema.names if name not in used}
    none = [None] * n
    for i in range(n):
        row = first_row + i
        try:
            ms_level = fields.get("ms_level", none)[i]
            if ms_level is not None and int(ms_level) != 2:
                continue
            meta = {name: _text(values[i]) for name, values in extra.items() if values[i] is not None}
            title = fields.get("spectrum_id", none)[i]
            scan = fields.get("scan", none)[i]
            charge = fields.get("charge", none)[i]
            precursor = fields["precursor_mz"][i]
            retention = fields.get("retention_time", none)[i]
            spectrum = Spectrum(
                spectrum_id=spectrum_identifier(path, dataset=dataset, title=None if title is None else str(title),
                                                index=row),
                mz=np.array(mz_values[mz_off[i]:mz_off[i + 1]], dtype=np.float64),
                intensity=np.array(in_values[in_off[i]:in_off[i + 1]], dtype=np.float32),
                precursor_mz=None if precursor is None else float(precursor),
                charge=None if charge is None else int(charge),
                ion_mode=_ion_mode(fields.get("ion_mode", none)[i]),  # type: ignore[arg-type]
                source_file=path,
                native_id=_opt_str(fields.get("native_id", none)[i]),
                scan=None if scan is None else int(scan),
                ms_level=2,
                retention_time=None if retention is None or math.isnan(retention) else float(retention),
                collision_energy=_opt_str(fields.get("collision_energy", none)[i]),
                adduct=optional_text(_opt_str(fields.get("adduct", none)[i])),
                name=_opt_str(fields.get("name", none)[i]),
                smiles=optional_text(_opt_str(fields.get("smiles", none)[i])),
                inchi=optional_text(_opt_str(fields.get("inchi", none)[i])),
                inchikey=optional_text(_opt_str(fields.get("inchikey", none)[i])),
                formula=optional_text(_opt_str(fields.get("formula", none)[i])),
                metadata=meta,
            )
        except (TypeError, ValueError) as exc:
            yield InvalidRecordError(f"cannot read row {row}: {exc}", path=path, record=f"row {row}",
                                     reason="parse_error")
            continue
        yield spectrum


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _ion_mode(value: Any) -> str | None:
    return None if value is None else parse_ion_mode(str(value))
