"""Build a spectrum library: read -> validate -> embed -> store (LanceDB) -> index (FAISS partitions).

Running it again on the same directory adds only new files / spectra.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine.core.records import IonMode
from engine.core.schema import spectra_to_batch
from engine.io.inputs import expand_inputs, file_sha256
from engine.io.stream import OnInvalid, ReadReport, batched, read_indexed_spectra
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
    ledger = FileLedger(out)
    report = ReadReport()
    result = BuildResult(path=Path(out))
    bar = tqdm(total=None, unit=" spectra", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for path in paths:
            sha = file_sha256(path)
            if sha in ledger:
                report.files += 1
                report.files_unchanged += 1
                continue
            bar.set_postfix_str(path.name, refresh=False)
            kept, skipped = report.kept, report.n_skipped
            items = read_indexed_spectra(path, on_invalid=on_invalid, dataset=dataset,
                                         default_ion_mode=default_ion_mode, report=report)
            for chunk in batched(items, batch_size):
                batch = spectra_to_batch([s for _, s in chunk], file_sha256=sha,
                                         record_indices=[i for i, _ in chunk])
                emb, quality = embedder.embed_spectra(batch)
                n_new = lib.add(with_embeddings(batch, emb, quality))
                result.inserted += n_new
                result.duplicates += batch.num_rows - n_new
                bar.update(batch.num_rows)
            ledger.record(sha, str(path), n_records=report.kept - kept, n_skipped=report.n_skipped - skipped)
    finally:
        bar.close()
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
