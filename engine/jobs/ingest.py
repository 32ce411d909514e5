"""Ingest spectrum files into the LanceDB table ``spectra`` of a store directory.

Each file is written in one LanceDB transaction from a stream of fixed-size record batches, so memory
stays flat and an interrupted ingest leaves either the whole file or nothing. A ledger table
(``ingested_files``) records the content hash of every complete file: re-ingesting an unchanged file
is a no-op, and rows left by a file whose ledger entry is missing are replaced, never duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from tqdm import tqdm

from engine.core.errors import IncompatibleArtifactError, os_error_in
from engine.core.locks import DirectoryLock
from engine.core.records import IonMode
from engine.core.schema import SPECTRUM_SCHEMA, check_schema_version, spectra_to_batch
from engine.io.inputs import file_sha256, require_spectrum_files
from engine.io.readers.identifiers import check_dataset
from engine.io.stream import OnInvalid, ReadReport, batched, read_indexed_spectra
from indexes.store import FileLedger, sql_quote

SPECTRA_TABLE = "spectra"
LEDGER_TABLE = "ingested_files"


@dataclass
class IngestResult:
    """Summary of one ingest run."""

    report: ReadReport
    store: Path
    rows_in_table: int
    seconds: float

    @property
    def spectra_per_second(self) -> float:
        return self.report.spectra_read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "store": str(self.store), "rows_in_table": self.rows_in_table,
                "seconds": round(self.seconds, 3), "spectra_per_second": round(self.spectra_per_second, 1)}


def _open_or_create(db: Any, name: str, schema: pa.Schema, where: str) -> Any:
    if name in db.list_tables().tables:
        table = db.open_table(name)
        check_schema_version(table.schema, where=f"{where}/{name}")
        if table.schema.names != schema.names:
            raise IncompatibleArtifactError(f"{where}/{name}: columns {table.schema.names} differ from this "
                                            f"engine's {schema.names}")
        return table
    return db.create_table(name, schema=schema)


#: Writes one file's stream of record batches into a store (called once per new file).
FileWriter = Callable[[Path, str, Iterator[pa.RecordBatch]], None]


def ingest_files(paths: Sequence[Path], ledger: FileLedger, write: FileWriter, *, on_invalid: OnInvalid = "error",
                 dataset: str | None = None, default_ion_mode: IonMode | None = None, batch_size: int = 16_384,
                 report: ReadReport, progress: bool = True) -> None:
    """The one ingest loop: for each file not yet in ``ledger``, stream its valid spectra as Arrow batches
    (file hash and record index attached) into ``write``, then record the file in the ledger.

    ``engine ingest`` writes the batches as they are; a library build embeds them first. A file whose
    ledger entry exists is counted as unchanged and not read again.
    """
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
            write(path, sha, _file_batches(path, sha, on_invalid=on_invalid, dataset=dataset,
                                           default_ion_mode=default_ion_mode, report=report,
                                           batch_size=batch_size, bar=bar))
            ledger.record(sha, str(path), n_records=report.kept - kept, n_skipped=report.n_skipped - skipped)
    finally:
        bar.close()


def ingest(inputs: Sequence[str | Path], store: str | Path, *, on_invalid: OnInvalid = "error",
           dataset: str | None = None, default_ion_mode: IonMode | None = None,
           batch_size: int = 16_384, progress: bool = True, report_path: str | Path | None = None,
           lock_wait: float = 0.0) -> IngestResult:
    """Stream ``inputs`` (files, directories, globs, file lists) into ``STORE/spectra``.

    Raises the first :class:`~engine.core.errors.InvalidInputError` in ``error`` mode; in ``skip`` mode bad
    records are counted in the report (and written to ``report_path`` as Parquet when given). The store
    is locked for the run (:mod:`engine.core.locks`): another writer waits up to ``lock_wait`` seconds
    or stops with a message naming the holder, so concurrent ingests of one file add its rows once.
    """
    if dataset is not None:
        check_dataset(dataset)
    paths = require_spectrum_files(inputs)
    with DirectoryLock(store, command="engine ingest", wait=lock_wait):
        try:
            return _ingest_locked(paths, Path(store), on_invalid=on_invalid, dataset=dataset,
                                  default_ion_mode=default_ion_mode, batch_size=batch_size, progress=progress,
                                  report_path=report_path)
        except RuntimeError as exc:  # LanceDB's IO errors (a full disk): an OSError naming the store
            if (os_error := os_error_in(exc, store)) is None:
                raise
            raise os_error from None


def _ingest_locked(paths: Sequence[Path], store: Path, *, on_invalid: OnInvalid, dataset: str | None,
                   default_ion_mode: IonMode | None, batch_size: int, progress: bool,
                   report_path: str | Path | None) -> IngestResult:
    start = time.perf_counter()
    db = lancedb.connect(str(store))
    spectra = _open_or_create(db, SPECTRA_TABLE, SPECTRUM_SCHEMA, str(store))
    ledger = FileLedger(store, name=LEDGER_TABLE)
    report = ReadReport()

    def write(path: Path, sha: str, batches: Iterator[pa.RecordBatch]) -> None:
        # Rows from an earlier interrupted ingest of this content have no ledger entry: drop them, then
        # write the whole file in one transaction.
        spectra.delete(f"file_sha256 = {sql_quote(sha)}")
        _add_stream(spectra, batches)

    try:
        ingest_files(paths, ledger, write, on_invalid=on_invalid, dataset=dataset,
                     default_ion_mode=default_ion_mode, batch_size=batch_size, report=report, progress=progress)
    finally:
        if report_path is not None:
            report.write_parquet(report_path)
    return IngestResult(report=report, store=store, rows_in_table=spectra.count_rows(),
                        seconds=time.perf_counter() - start)


def _add_stream(table: Any, batches: Iterator[pa.RecordBatch]) -> None:
    """Append a stream of batches in one transaction; an error raised by the stream is re-raised as is."""
    raised: list[BaseException] = []

    def guarded() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as exc:  # re-raised below, unwrapped from LanceDB's RuntimeError
            raised.append(exc)
            raise

    try:
        table.add(pa.RecordBatchReader.from_batches(SPECTRUM_SCHEMA, guarded()))
    except Exception:
        if raised:
            raise raised[0] from None
        raise


def _file_batches(path: Path, sha: str, *, on_invalid: OnInvalid, dataset: str | None,
                  default_ion_mode: IonMode | None, report: ReadReport, batch_size: int,
                  bar: Any) -> Iterator[pa.RecordBatch]:
    items = read_indexed_spectra(path, on_invalid=on_invalid, dataset=dataset,
                                 default_ion_mode=default_ion_mode, report=report)
    for chunk in batched(items, batch_size):
        yield spectra_to_batch([s for _, s in chunk], file_sha256=sha, record_indices=[i for i, _ in chunk])
        bar.update(len(chunk))
