"""Build a spectrum library: read -> validate -> embed -> store (LanceDB) -> index (FAISS partitions).

Running it again on the same directory adds only new files / spectra.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.core.records import IonMode
from engine.io.inputs import expand_inputs
from engine.io.stream import OnInvalid, ReadReport
from engine.jobs.ingest import ingest_files
from engine.models.encoders.base import SpectrumEmbedder
from indexes.faiss_ivf import IndexPolicy
from indexes.library import Library, with_embeddings
from indexes.store import FileLedger


@dataclass
class BuildResult:
    """What a library or molecule-database build did."""

    path: Path
    inserted: int = 0
    duplicates: int = 0
    rows: int = 0
    seconds: float = 0.0
    read: dict[str, Any] = field(default_factory=dict)
    stale_partitions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "inserted": self.inserted, "duplicates": self.duplicates,
                "rows": self.rows, "seconds": round(self.seconds, 3), **self.read,
                "stale_partitions": self.stale_partitions}


def build_library(inputs: Sequence[str | Path], out: str | Path, embedder: SpectrumEmbedder, *,
                  on_invalid: OnInvalid = "error", default_ion_mode: IonMode | None = None,
                  dataset: str | None = None,
                  batch_size: int = 4096, policy: IndexPolicy | None = None, progress: bool = True,
                  report_path: str | Path | None = None) -> BuildResult:
    """Ingest, embed and index spectrum files into the library at ``out`` (created or extended).

    Files whose content was added before are skipped; spectrum ids already present are not duplicated.
    """
    start = time.perf_counter()
    paths = expand_inputs(inputs)
    lib = Library.create(out, dim=embedder.dim, encoder_hash=embedder.encoder_hash)
    report = ReadReport()
    result = BuildResult(path=Path(out))

    def write(path: Path, sha: str, batches: Iterator[pa.RecordBatch]) -> None:
        for batch in batches:
            emb, quality = embedder.embed_spectra(batch)
            n_new = lib.add(with_embeddings(batch, emb, quality))
            result.inserted += n_new
            result.duplicates += batch.num_rows - n_new

    try:
        ingest_files(paths, FileLedger(out), write, on_invalid=on_invalid, dataset=dataset,
                     default_ion_mode=default_ion_mode, batch_size=batch_size, report=report, progress=progress)
    finally:
        if report_path is not None:
            report.write_parquet(report_path)
    if result.inserted:
        lib.table.optimize()
    manifest = lib.update_index(policy=policy, progress=progress)
    result.rows = lib.table.count_rows()
    result.read = report.to_dict()
    result.stale_partitions = manifest.stale()
    result.seconds = time.perf_counter() - start
    return result
