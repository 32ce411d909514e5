"""The versioned Arrow schemas of the project, and conversion between spectra and record batches.

Every table and Parquet file written by the engine carries ``SCHEMA_VERSION`` in its schema metadata;
readers refuse another version with a message (see :func:`check_schema_version`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

from engine.core.errors import IncompatibleArtifactError, InvalidRecordError
from engine.core.records import Spectrum

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"engine.schema_version"

#: Columns of the ``spectra`` table / spectrum Parquet files, in order.
SPECTRUM_FIELDS: tuple[pa.Field, ...] = (
    pa.field("spectrum_id", pa.string(), nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("file_sha256", pa.string()),
    pa.field("record_index", pa.int64()),
    pa.field("native_id", pa.string()),
    pa.field("scan", pa.int64()),
    pa.field("ms_level", pa.int8()),
    pa.field("precursor_mz", pa.float64()),
    pa.field("charge", pa.int8()),
    pa.field("ion_mode", pa.string()),
    pa.field("retention_time", pa.float64()),
    pa.field("collision_energy", pa.string()),
    pa.field("adduct", pa.string()),
    pa.field("name", pa.string()),
    pa.field("smiles", pa.string()),
    pa.field("inchi", pa.string()),
    pa.field("inchikey", pa.string()),
    pa.field("formula", pa.string()),
    pa.field("metadata_json", pa.string()),
    pa.field("n_peaks", pa.int32()),
    pa.field("mz", pa.list_(pa.float64())),
    pa.field("intensity", pa.list_(pa.float32())),
)
SPECTRUM_COLUMNS: tuple[str, ...] = tuple(f.name for f in SPECTRUM_FIELDS)


#: Columns that recur across the engine's tables (spectra, molecules, search hits, candidate ranks,
#: annotations, networks), typed once: a schema names them (:func:`versioned_schema`, :func:`column`).
COMMON_FIELDS: dict[str, pa.Field] = {f.name: f for f in (
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("rank", pa.int32(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("library_id", pa.string(), nullable=False),
    pa.field("spectrum_id", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("record_index", pa.int64()),
    pa.field("scan", pa.int64()),
    pa.field("precursor_mz", pa.float64()),
    pa.field("ion_mode", pa.string()),
    pa.field("adduct", pa.string()),
    pa.field("retention_time", pa.float64()),
    pa.field("n_peaks", pa.int32()),
    pa.field("inchikey", pa.string()),
    pa.field("smiles", pa.string()),
    pa.field("name", pa.string()),
    pa.field("formula", pa.string()),
    pa.field("monoisotopic_mass", pa.float64()),
    pa.field("mass_difference", pa.float64()),
    pa.field("quality", pa.float32()),
    pa.field("library_quality", pa.float32()),
    pa.field("n_candidates", pa.int32()),
)}


def column(name: str, *, nullable: bool | None = None) -> pa.Field:
    """The :data:`COMMON_FIELDS` column ``name`` (with ``nullable`` changed when given)."""
    found = COMMON_FIELDS[name]
    return found if nullable is None else found.with_nullable(nullable)


def versioned_schema(fields: Sequence[pa.Field | str], extra: dict[bytes | str, bytes | str] | None = None
                     ) -> pa.Schema:
    """A schema of ``fields`` (a name stands for its :data:`COMMON_FIELDS` column) carrying the engine's
    schema version and the ``extra`` metadata."""
    meta: dict[bytes | str, bytes | str] = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}
    meta.update(extra or {})
    return pa.schema([column(f) if isinstance(f, str) else f for f in fields], metadata=meta)


def spectrum_schema(embedding_dim: int | None = None) -> pa.Schema:
    """Schema of spectrum rows; with ``embedding_dim`` it adds ``embedding`` and ``quality`` columns."""
    fields: list[pa.Field] = list(SPECTRUM_FIELDS)
    if embedding_dim is not None:
        fields += [
            pa.field("embedding", pa.list_(pa.float32(), embedding_dim)),
            pa.field("quality", pa.float32()),
        ]
    return versioned_schema(fields)


SPECTRUM_SCHEMA = spectrum_schema()


def molecule_schema(embedding_dim: int | None = None) -> pa.Schema:
    """Schema of the ``molecules`` table."""
    fields: list[pa.Field] = [column("inchikey", nullable=False), column("smiles", nullable=False),
                              column("formula"), column("monoisotopic_mass"), column("name")]
    if embedding_dim is not None:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    return versioned_schema(fields)


def check_schema_version(schema: pa.Schema, *, where: str) -> None:
    """Refuse a table or file written with another schema version."""
    meta = schema.metadata or {}
    found = meta.get(SCHEMA_VERSION_KEY)
    if found is None:
        raise IncompatibleArtifactError(f"{where}: no engine schema version in its metadata; "
                                        f"it was not written by this engine (expected version {SCHEMA_VERSION})")
    if int(found) != SCHEMA_VERSION:
        raise IncompatibleArtifactError(f"{where}: schema version {int(found)} but this engine reads "
                                        f"version {SCHEMA_VERSION}; re-create it with this engine")


def spectra_to_batch(spectra: Sequence[Spectrum], *, file_sha256: str | None = None,
                     record_indices: Sequence[int] | None = None) -> pa.RecordBatch:
    """Convert spectra to one record batch of :data:`SPECTRUM_SCHEMA` (peak lists without copies per row).

    A charge, MS level or scan number that does not fit its integer column raises
    :class:`InvalidRecordError` naming the spectrum (validation refuses them before they get here).
    """
    n = len(spectra)
    for s in spectra:
        _check_fits(s)
    lengths = np.fromiter((s.mz.shape[0] for s in spectra), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mz = np.concatenate([s.mz for s in spectra]).astype(np.float64, copy=False) if n else np.zeros(0)
    inten = (np.concatenate([s.intensity for s in spectra]).astype(np.float32, copy=False)
             if n else np.zeros(0, np.float32))
    off = pa.array(offsets, type=pa.int32())
    cols: dict[str, pa.Array] = {
        "spectrum_id": pa.array([s.spectrum_id for s in spectra], pa.string()),
        "source_file": pa.array([s.source_file for s in spectra], pa.string()),
        "file_sha256": pa.array([file_sha256] * n, pa.string()),
        "record_index": pa.array(list(record_indices) if record_indices is not None else [None] * n,
                                 pa.int64()),
        "native_id": pa.array([s.native_id for s in spectra], pa.string()),
        "scan": pa.array([s.scan for s in spectra], pa.int64()),
        "ms_level": pa.array([s.ms_level for s in spectra], pa.int8()),
        "precursor_mz": pa.array([s.precursor_mz for s in spectra], pa.float64()),
        "charge": pa.array([s.charge for s in spectra], pa.int8()),
        "ion_mode": pa.array([s.ion_mode for s in spectra], pa.string()),
        "retention_time": pa.array([s.retention_time for s in spectra], pa.float64()),
        "collision_energy": pa.array([s.collision_energy for s in spectra], pa.string()),
        "adduct": pa.array([s.adduct for s in spectra], pa.string()),
        "name": pa.array([s.name for s in spectra], pa.string()),
        "smiles": pa.array([s.smiles for s in spectra], pa.string()),
        "inchi": pa.array([s.inchi for s in spectra], pa.string()),
        "inchikey": pa.array([s.inchikey for s in spectra], pa.string()),
        "formula": pa.array([s.formula for s in spectra], pa.string()),
        "metadata_json": pa.array([json.dumps(s.metadata, sort_keys=True) if s.metadata else None
                                   for s in spectra], pa.string()),
        "n_peaks": pa.array(lengths.astype(np.int32), pa.int32()),
        "mz": pa.ListArray.from_arrays(off, pa.array(mz, pa.float64())),
        "intensity": pa.ListArray.from_arrays(off, pa.array(inten, pa.float32())),
    }
    return pa.RecordBatch.from_arrays([cols[name] for name in SPECTRUM_COLUMNS], schema=SPECTRUM_SCHEMA)


_INT8 = (-128, 127)
_INT64 = (-(2**63), 2**63 - 1)


def _check_fits(spectrum: Spectrum) -> None:
    for name, value, (low, high) in (("charge", spectrum.charge, _INT8), ("ms_level", spectrum.ms_level, _INT8),
                                     ("scan", spectrum.scan, _INT64)):
        if value is not None and not low <= value <= high:
            raise InvalidRecordError(f"{name} {value} does not fit its column ({low}..{high})",
                                     path=spectrum.source_file or None, record=spectrum.spectrum_id,
                                     reason=f"invalid_{name}")


def batch_to_spectra(batch: pa.RecordBatch | pa.Table) -> Iterable[Spectrum]:
    """Yield :class:`Spectrum` objects from a batch of the spectrum schema (extra columns ignored)."""
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else None  # type: ignore[assignment]
        if batch is None:
            return
    mz_col: pa.ListArray = batch.column("mz")  # type: ignore[assignment]
    in_col: pa.ListArray = batch.column("intensity")  # type: ignore[assignment]
    mz_off = mz_col.offsets.to_numpy()
    in_off = in_col.offsets.to_numpy()
    mz_vals = mz_col.values.to_numpy(zero_copy_only=False)
    in_vals = in_col.values.to_numpy(zero_copy_only=False)
    names = batch.schema.names
    py = {c: batch.column(c).to_pylist() for c in SPECTRUM_COLUMNS if c in names and c not in ("mz", "intensity")}
    for i in range(batch.num_rows):
        meta = py.get("metadata_json", [None] * batch.num_rows)[i]
        yield Spectrum(
            spectrum_id=str(py["spectrum_id"][i]),
            mz=np.asarray(mz_vals[mz_off[i]:mz_off[i + 1]], dtype=np.float64),
            intensity=np.asarray(in_vals[in_off[i]:in_off[i + 1]], dtype=np.float32),
            precursor_mz=py.get("precursor_mz", [None] * batch.num_rows)[i],
            charge=py.get("charge", [None] * batch.num_rows)[i],
            ion_mode=py.get("ion_mode", [None] * batch.num_rows)[i],
            source_file=py.get("source_file", [""] * batch.num_rows)[i] or "",
            native_id=py.get("native_id", [None] * batch.num_rows)[i],
            scan=py.get("scan", [None] * batch.num_rows)[i],
            ms_level=py.get("ms_level", [2] * batch.num_rows)[i] or 2,
            retention_time=py.get("retention_time", [None] * batch.num_rows)[i],
            collision_energy=py.get("collision_energy", [None] * batch.num_rows)[i],
            adduct=py.get("adduct", [None] * batch.num_rows)[i],
            name=py.get("name", [None] * batch.num_rows)[i],
            smiles=py.get("smiles", [None] * batch.num_rows)[i],
            inchi=py.get("inchi", [None] * batch.num_rows)[i],
            inchikey=py.get("inchikey", [None] * batch.num_rows)[i],
            formula=py.get("formula", [None] * batch.num_rows)[i],
            metadata=json.loads(meta) if meta else {},
        )
