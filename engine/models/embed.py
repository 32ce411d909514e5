"""Embed spectrum files and molecule files into Parquet with the joint model.

Spectra: any supported spectrum file (read, validated, streamed in batches); one row per valid spectrum
with ``spectrum_id``, ``source_file``, precursor / ion mode / adduct, ``embedding`` and ``quality``.
Molecules: a SMILES file (``.smi``/``.smiles``/``.txt``: ``SMILES [id]`` per line), CSV/TSV or Parquet
with a ``smiles`` column, or SDF; one row per molecule with the input's columns unchanged plus
``embedding``. Both files carry the schema version, the encoder hash and the dimension in their schema
metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.errors import FileFormatError, InvalidMoleculeError
from engine.core.records import IonMode
from engine.core.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, spectrum_schema
from engine.io.writers.parquet import parquet_writer
from engine.models.structures import RECORD, structure_chunks

if TYPE_CHECKING:
    from engine.io.stream import OnInvalid, ReadReport
    from engine.models.model import JointModel

SPECTRUM_ID_COLUMNS = ("spectrum_id", "source_file", "record_index", "precursor_mz", "charge", "ion_mode",
                       "adduct")


def _meta(model: JointModel, kind: str) -> dict[bytes | str, bytes | str]:
    return {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(), b"engine.embedding": kind.encode(),
            b"engine.encoder_hash": model.encoder_hash.encode(), b"engine.dim": str(model.dim).encode(),
            b"engine.pipeline": json.dumps(model.pipeline.to_dict(), sort_keys=True).encode()}


def embedding_array(emb: npt.NDArray[np.float32]) -> pa.FixedSizeListArray:
    """``fixed_size_list<float32>[dim]`` column from an ``[n, dim]`` array."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), emb.shape[1])


@dataclass
class EmbedResult:
    """What an embed run wrote."""

    out: Path
    rows: int
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "rows": self.rows, "seconds": round(self.seconds, 3), **self.report}


def spectrum_embedding_schema(model: JointModel) -> pa.Schema:
    """Schema of embedded spectra: the identifying columns, ``embedding`` and ``quality``, with the model's
    metadata."""
    base = spectrum_schema()
    fields: list[pa.Field[Any]] = [base.field(c) for c in SPECTRUM_ID_COLUMNS]
    fields += [pa.field("embedding", pa.list_(pa.float32(), model.dim)), pa.field("quality", pa.float32())]
    return pa.schema(fields, metadata=_meta(model, "spectrum"))


def embedded_batches(batches: Iterable[pa.RecordBatch], model: JointModel, *, batch_size: int = 1024
                     ) -> Iterator[pa.RecordBatch]:
    """Embed each spectrum batch: one row per spectrum of :func:`spectrum_embedding_schema`."""
    schema = spectrum_embedding_schema(model)
    for batch in batches:
        emb, quality = model.embed_spectra(batch, batch_size=batch_size)
        cols = [batch.column(c).cast(schema.field(c).type) for c in SPECTRUM_ID_COLUMNS]
        yield pa.RecordBatch.from_arrays([*cols, embedding_array(emb), pa.array(quality, pa.float32())],
                                         schema=schema)


def embed_spectra_files(inputs: Sequence[str | Path], out_parquet: str | Path, *,
                        model: JointModel, on_invalid: OnInvalid = "error",
                        dataset: str | None = None, default_ion_mode: IonMode | None = None,
                        batch_size: int = 1024, progress: bool = False,
                        report: ReadReport | None = None) -> EmbedResult:
    """Embed every valid spectrum of ``inputs`` (files, directories, globs) into ``out_parquet``."""
    from engine.io.inputs import expand_inputs
    from engine.io.stream import ReadReport, iter_spectrum_batches

    report = report if report is not None else ReadReport()
    paths = expand_inputs(inputs)
    if not paths:
        raise FileFormatError("no spectrum files found", path=", ".join(map(str, inputs)), reason="file_error")
    t0 = time.perf_counter()
    out = Path(out_parquet)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="embed spectra", unit=" spectra")
    batches = iter_spectrum_batches(paths, batch_size=max(batch_size, 4096), on_invalid=on_invalid,
                                    dataset=dataset, default_ion_mode=default_ion_mode, report=report)
    with parquet_writer(out, spectrum_embedding_schema(model)) as writer:
        for embedded in embedded_batches(batches, model, batch_size=batch_size):
            writer.write_batch(embedded)
            rows += embedded.num_rows
            if bar is not None:
                bar.update(embedded.num_rows)
    if bar is not None:
        bar.close()
    return EmbedResult(out, rows, time.perf_counter() - t0, report.to_dict())


# -- molecules -----------------------------------------------------------------------------------

def embed_molecule_file(input: str | Path, out_parquet: str | Path, *, model: JointModel,
                        on_invalid: OnInvalid = "error", batch_size: int = 1024) -> EmbedResult:
    """Embed every molecule of ``input`` into ``out_parquet`` (input columns unchanged + ``embedding``).

    In ``skip`` mode invalid structures are left out and listed (``skipped``) in the result's report.
    """
    t0 = time.perf_counter()
    out = Path(out_parquet)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    rows, skipped = 0, []
    try:
        for table in structure_chunks(input):
            smiles = [s if isinstance(s, str) else "" for s in table.column("smiles").to_pylist()]
            records = table.column(RECORD).to_pylist()
            result = model.embed_molecules(smiles, batch_size=batch_size, on_invalid="skip")
            if result.skipped and on_invalid == "error":
                index, bad = result.skipped[0]
                raise InvalidMoleculeError(f"invalid SMILES {bad!r}: RDKit cannot parse it", path=str(input),
                                           record=records[index], reason="invalid_smiles")
            skipped += [{"record": records[i], "smiles": s} for i, s in result.skipped]
            kept = table.drop_columns([RECORD]).filter(pa.array(result.valid))
            kept = kept.append_column(pa.field("embedding", pa.list_(pa.float32(), model.dim)),
                                      embedding_array(result.embeddings) if kept.num_rows else
                                      pa.array([], pa.list_(pa.float32(), model.dim)))
            if writer is None or schema is None:
                schema = kept.schema.with_metadata({**(kept.schema.metadata or {}), **_meta(model, "molecule")})
                writer = parquet_writer(out, schema)
            writer.write_table(kept.cast(schema))
            rows += kept.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        empty = pa.schema([pa.field("smiles", pa.string()),
                           pa.field("embedding", pa.list_(pa.float32(), model.dim))],
                          metadata=_meta(model, "molecule"))
        pq.write_table(empty.empty_table(), out)
    return EmbedResult(out, rows, time.perf_counter() - t0,
                       {"molecules_read": rows + len(skipped), "kept": rows, "skipped": len(skipped),
                        "skipped_records": skipped})
