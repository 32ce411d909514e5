"""Build a spectrum library: read -> validate -> (decoys) -> embed -> store (LanceDB) -> index (FAISS partitions).

Running it again on the same directory adds only new files / spectra. Every target spectrum gets a decoy
(:mod:`engine.core.decoys`) in the same batch, embedded by the same model and stored with
``is_decoy = true``; a decoy has its target's precursor m/z and ion mode, so it lands in the same index
partition. Spectra already present (and so their decoys) are not added again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from engine.core.decoys import FragmentPool
from engine.core.errors import IncompatibleArtifactError, os_error_in
from engine.core.locks import DirectoryLock
from engine.core.records import IonMode
from engine.core.schema import batch_to_spectra, spectra_to_batch
from engine.io.inputs import require_spectrum_files
from engine.io.stream import OnInvalid, ReadReport
from engine.jobs.ingest import ingest_files
from engine.models.encoders.base import SpectrumEmbedder
from indexes.faiss_ivf import IndexPolicy
from indexes.library import Library, with_embeddings
from indexes.store import IS_DECOY, FileLedger

#: The fragment pool decoys are sampled from (``tools/build_decoy_pool.py``).
DECOY_POOL = Path(__file__).resolve().parents[1] / "data" / "decoys" / "fragment_pool.npz"


@dataclass
class BuildResult:
    """What a library or molecule-database build did."""

    path: Path
    inserted: int = 0
    duplicates: int = 0
    decoys_inserted: int = 0
    rows: int = 0
    decoys: int = 0
    seconds: float = 0.0
    read: dict[str, Any] = field(default_factory=dict)
    stale_partitions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "inserted": self.inserted, "duplicates": self.duplicates,
                "decoys_inserted": self.decoys_inserted, "decoys": self.decoys,
                "rows": self.rows, "seconds": round(self.seconds, 3), **self.read,
                "stale_partitions": self.stale_partitions}


def build_library(inputs: Sequence[str | Path], out: str | Path, embedder: SpectrumEmbedder, *,
                  lock_wait: float = 0.0, **options: Any) -> BuildResult:
    """:func:`build_library_locked` holding the library's lock (:mod:`engine.core.locks`): another writer
    waits up to ``lock_wait`` seconds or stops with a message naming the holder."""
    with DirectoryLock(out, command="engine library build", wait=lock_wait):
        try:
            return build_library_locked(inputs, out, embedder, **options)
        except RuntimeError as exc:  # LanceDB's IO errors (a full disk): an OSError naming the library
            if (os_error := os_error_in(exc, out)) is None:
                raise
            raise os_error from None


def build_library_locked(inputs: Sequence[str | Path], out: str | Path, embedder: SpectrumEmbedder, *,
                         on_invalid: OnInvalid = "error", default_ion_mode: IonMode | None = None,
                         dataset: str | None = None,
                         batch_size: int = 4096, policy: IndexPolicy | None = None, progress: bool = True,
                         report_path: str | Path | None = None, decoys: bool | None = None,
                         decoy_pool: FragmentPool | None = None) -> BuildResult:
    """Ingest, embed and index spectrum files into the library at ``out`` (created or extended).

    Files whose content was added before are skipped; spectrum ids already present are not duplicated.
    ``decoys`` (default: True for a new library, else what the library already does) adds a decoy per
    target spectrum from ``decoy_pool`` (default: the bundled pool).
    """
    start = time.perf_counter()
    paths = require_spectrum_files(inputs)
    lib = Library.create(out, dim=embedder.dim, encoder_hash=embedder.encoder_hash)
    opened_at = lib.table.version()  # older versions are compacted copies: pruned below
    decoys = decoy_setting(lib, decoys)
    pool = (decoy_pool or FragmentPool.load(DECOY_POOL)) if decoys else None
    report = ReadReport()
    result = BuildResult(path=Path(out))

    def write(path: Path, sha: str, batches: Iterator[pa.RecordBatch]) -> None:
        for batch in batches:
            n_targets = batch.num_rows
            if pool is not None:
                batch = with_decoys(batch, pool)
            emb, quality = embedder.embed_spectra(batch)
            before = lib.n_decoys() if pool is not None else 0
            n_new = lib.add(with_embeddings(batch, emb, quality))
            n_decoys = lib.n_decoys() - before if pool is not None else 0
            result.inserted += n_new - n_decoys
            result.decoys_inserted += n_decoys
            result.duplicates += n_targets - (n_new - n_decoys)

    try:
        ingest_files(paths, FileLedger(out), write, on_invalid=on_invalid, dataset=dataset,
                     default_ion_mode=default_ion_mode, batch_size=batch_size, report=report, progress=progress)
    finally:
        if report_path is not None:
            report.write_parquet(report_path)
    if result.inserted:
        lib.table.optimize(keep_from=opened_at)
    manifest = lib.update_index(policy=policy, progress=progress)
    result.rows = lib.table.count_rows()
    result.decoys = lib.n_decoys()
    result.read = report.to_dict()
    result.stale_partitions = manifest.stale()
    result.seconds = time.perf_counter() - start
    return result


def decoy_setting(lib: Library, decoys: bool | None) -> bool:
    """Whether this build adds decoys: as asked, else as the library does (decoys for a new one); refuses
    a mix, which would bias the q-values (targets without decoys, or decoys for some files only)."""
    rows = lib.table.count_rows()
    has = lib.n_decoys() > 0
    if decoys is None:
        return lib.has_decoy_column and (rows == 0 or has)
    if decoys and not lib.has_decoy_column:
        raise IncompatibleArtifactError(f"{lib.path}: library built before decoy spectra existed; build a new "
                                        f"library for q-values, or pass --no-decoys to extend this one")
    if decoys and rows and not has:
        raise IncompatibleArtifactError(f"{lib.path}: library built without decoys; build a new library for "
                                        f"q-values, or pass --no-decoys to extend this one")
    if not decoys and has:
        raise IncompatibleArtifactError(f"{lib.path}: library holds decoys; adding spectra without theirs would "
                                        f"bias its q-values (leave out --no-decoys)")
    return decoys


def with_decoys(batch: pa.RecordBatch, pool: FragmentPool) -> pa.RecordBatch:
    """``batch`` (targets, spectrum schema) followed by their decoys, with the ``is_decoy`` column."""
    sha = batch.column("file_sha256")[0].as_py() if batch.num_rows else None
    index: list[Any] = batch.column("record_index").to_pylist()
    made = [(pool.decoy(s), i) for s, i in zip(batch_to_spectra(batch), index, strict=True)]
    kept = [(d, i) for d, i in made if d is not None]
    decoy_batch = spectra_to_batch([d for d, _ in kept], file_sha256=sha, record_indices=[i for _, i in kept])
    table = pa.Table.from_batches([batch, decoy_batch])
    flags = np.r_[np.zeros(batch.num_rows, dtype=bool), np.ones(decoy_batch.num_rows, dtype=bool)]
    table = table.append_column(IS_DECOY, pa.array(flags)).combine_chunks()
    return table.to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
