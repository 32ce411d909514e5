"""A repository: every MS2 spectrum of public datasets, embedded and indexed by its USI.

``REPO/`` has the layout of a spectrum library (:mod:`indexes.library`): the LanceDB table ``spectra``
(peaks, precursor, ion mode, embedding; ``spectrum_id`` is the USI ``mzspec:MSV...:<file>:scan:<n>``),
its partitioned FAISS index ``REPO/index`` (exact, IVF-Flat or IVF-PQ with exact re-scoring, by the
library's size rule), and the ledger ``repository_files`` of the (dataset, file content) pairs added.

Adding is incremental: a file already added under a dataset is skipped whole, a USI already present is
not inserted again, and new rows are appended to the partitions of their ion mode and mass without
rebuilding the index; only partitions the size rule calls stale (grown past their kind or training
size, or with a long unsorted tail) are retrained from their own files, as ``engine index retrain`` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.errors import EngineError
from engine.core.locks import DirectoryLock
from engine.core.records import IonMode
from engine.core.schema import spectra_to_batch
from engine.io.inputs import expand_inputs, file_sha256
from engine.io.readers.identifiers import check_dataset
from engine.io.stream import OnInvalid, ReadReport, batched, read_indexed_spectra
from indexes.faiss_ivf import IndexPolicy
from indexes.library import Library, with_embeddings
from indexes.store import FileLedger

log = logging.getLogger(__name__)

#: The ledger of (dataset, file) pairs; its key column holds ``<dataset>:<sha256 of the file>``.
FILES_TABLE = "repository_files"


def dataset_of(usi: str) -> str | None:
    """The dataset accession of a USI (``mzspec:MSV000084630:file:scan:1`` -> ``MSV000084630``)."""
    parts = usi.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "mzspec" else None


@dataclass
class AddResult:
    """What one ``engine repository add`` did."""

    repo: Path
    dataset: str
    inserted: int = 0
    duplicates: int = 0
    rows: int = 0
    seconds: float = 0.0
    read: dict[str, Any] = field(default_factory=dict)
    retrained: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": str(self.repo), "dataset": self.dataset, "inserted": self.inserted,
                "duplicates": self.duplicates, "rows": self.rows, "seconds": round(self.seconds, 3),
                **self.read, "retrained_partitions": self.retrained}


class RepositoryWriter:
    """Appends embedded spectra of one dataset to a repository; :meth:`finish` brings the index up to date."""

    def __init__(self, repo: str | Path, *, dataset: str, dim: int, encoder_hash: str,
                 policy: IndexPolicy | None = None) -> None:
        self.dataset = check_dataset(dataset)
        self.repo = Path(repo)
        self.library = Library.create(repo, dim=dim, encoder_hash=encoder_hash)
        self.ledger = FileLedger(repo, name=FILES_TABLE)
        #: versions of the table older than this are pruned at finish (their files are compacted copies)
        self.opened_at = self.library.table.version()
        self.policy = policy
        self.inserted = 0
        self.duplicates = 0

    def file_key(self, sha256: str) -> str:
        return f"{self.dataset}:{sha256}"

    def has_file(self, sha256: str) -> bool:
        return self.file_key(sha256) in self.ledger

    def add(self, batch: pa.RecordBatch | pa.Table, embeddings: npt.NDArray[np.float32],
            quality: npt.NDArray[np.float32]) -> int:
        """Store the MS2 rows of ``batch`` (spectrum ids must be USIs of this dataset); returns rows inserted."""
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if table.num_rows == 0:
            return 0
        ids = table.column("spectrum_id").to_pylist()
        wrong = [i for i in ids if dataset_of(str(i)) != self.dataset]
        if wrong:
            raise EngineError(f"{len(wrong)} spectra are not USIs of dataset {self.dataset} (e.g. {wrong[0]!r}); "
                              f"read them with --dataset {self.dataset}")
        level = table.column("ms_level").to_numpy(zero_copy_only=False)
        keep = np.flatnonzero(np.nan_to_num(np.asarray(level, dtype=np.float64), nan=2.0) == 2)
        emb, qual = np.asarray(embeddings), np.asarray(quality)
        if keep.shape[0] < table.num_rows:
            table, emb, qual = table.take(keep), emb[keep], qual[keep]
        n_new = self.library.add(with_embeddings(table, emb, qual))
        self.inserted += n_new
        self.duplicates += table.num_rows - n_new
        return n_new

    def add_annotated(self, batch: pa.RecordBatch | pa.Table, results: pa.Table) -> int:
        """Store a chunk of ``engine annotate`` with the embeddings and qualities its results carry (no second
        embedding); rows of ``results`` follow those of ``batch``."""
        if results.num_rows != batch.num_rows:
            raise EngineError(f"{results.num_rows} annotation rows for {batch.num_rows} spectra")
        col: Any = results.column("embedding").combine_chunks()
        emb = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(batch.num_rows, -1)
        quality = np.asarray(results.column("quality").to_numpy(zero_copy_only=False), np.float32)
        return self.add(batch, emb, quality)

    def file_done(self, sha256: str, path: str | Path, *, n_records: int, n_skipped: int) -> None:
        """Record a file of this dataset as complete (adding it again is then a no-op)."""
        self.ledger.record(self.file_key(sha256), str(path), n_records=n_records, n_skipped=n_skipped)

    def finish(self, *, progress: bool = False) -> list[str]:
        """Compact the table, append new rows to the index (never a full rebuild once there is one) and
        retrain the partitions that became stale; returns the names retrained."""
        if self.inserted:
            self.library.table.optimize(keep_from=self.opened_at)
        manifest = self.library.update_index(policy=self.policy, progress=progress, rebuild_when_larger=False)
        stale = manifest.stale()
        if not stale:
            return []
        log.info("retraining stale partitions: %s", ", ".join(f"{k} ({v})" for k, v in sorted(stale.items())))
        return self.library.retrain(sorted(stale), progress=progress)


def add_files(inputs: Sequence[str | Path], repo: str | Path, embedder: Any, *, dataset: str,
              on_invalid: OnInvalid = "skip", default_ion_mode: IonMode | None = None, batch_size: int = 4096,
              policy: IndexPolicy | None = None, progress: bool = True, lock_wait: float = 0.0) -> AddResult:
    """Read, embed and store every MS2 spectrum of ``inputs`` under ``dataset`` (see the module docstring).

    One writer at a time: another ``add`` on the same repository waits up to ``lock_wait`` seconds."""
    check_dataset(dataset)
    with DirectoryLock(repo, command="engine repository add", wait=lock_wait):
        return _add_files(inputs, repo, embedder, dataset=dataset, on_invalid=on_invalid,
                          default_ion_mode=default_ion_mode, batch_size=batch_size, policy=policy, progress=progress)


def _add_files(inputs: Sequence[str | Path], repo: str | Path, embedder: Any, *, dataset: str,
               on_invalid: OnInvalid, default_ion_mode: IonMode | None, batch_size: int,
               policy: IndexPolicy | None, progress: bool) -> AddResult:
    from tqdm import tqdm

    start = time.perf_counter()
    writer = RepositoryWriter(repo, dataset=dataset, dim=embedder.dim, encoder_hash=embedder.encoder_hash,
                              policy=policy)
    report = ReadReport()
    bar = tqdm(total=None, unit=" spectra", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for path in expand_inputs(inputs):
            sha = file_sha256(path)
            if writer.has_file(sha):
                report.files += 1
                report.files_unchanged += 1
                continue
            bar.set_postfix_str(path.name, refresh=False)
            inserted, skipped = writer.inserted, report.n_skipped
            items = read_indexed_spectra(path, on_invalid=on_invalid, dataset=dataset,
                                         default_ion_mode=default_ion_mode, report=report)
            for chunk in batched(items, batch_size):
                batch = spectra_to_batch([s for _, s in chunk], file_sha256=sha,
                                         record_indices=[i for i, _ in chunk])
                emb, quality = embedder.embed_spectra(batch)
                writer.add(batch, emb, quality)
                bar.update(batch.num_rows)
            writer.file_done(sha, path, n_records=writer.inserted - inserted, n_skipped=report.n_skipped - skipped)
    finally:
        bar.close()
    retrained = writer.finish(progress=progress)
    return AddResult(repo=Path(repo), dataset=dataset, inserted=writer.inserted, duplicates=writer.duplicates,
                     rows=writer.library.table.count_rows(), seconds=time.perf_counter() - start,
                     read=report.to_dict(), retrained=retrained)


def repository_info(repo: str | Path) -> dict[str, Any]:
    """Datasets (files and spectra each), files, spectra, encoder and index partitions of a repository."""
    lib = Library.open(repo)
    ledger = FileLedger(repo, name=FILES_TABLE).table.to_arrow()
    datasets: dict[str, dict[str, int]] = {}
    keys = ledger.column("file_sha256").to_pylist()
    counts = ledger.column("n_records").to_pylist()
    for key, n in zip(keys, counts, strict=True):
        entry = datasets.setdefault(str(key).split(":", 1)[0], {"files": 0, "spectra": 0})
        entry["files"] += 1
        entry["spectra"] += int(n or 0)
    info = lib.info()
    index = info.pop("index")
    return {**info, "datasets": dict(sorted(datasets.items())), "files": len(keys), "spectra": info["rows"],
            "partitions": index["partitions"] if index else [],
            "stale_partitions": {p["name"]: p["stale"] for p in index["partitions"] if p["stale"]} if index else {}}

