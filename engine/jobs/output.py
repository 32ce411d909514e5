"""The output directory of a resumable job: fingerprint, atomic result parts, per-file completion.

Layout under ``OUT``::

    job.json                          fingerprint (model, library, candidates, settings) of the results,
                                      and the job's resolved settings
    results/file=<key>/part-<k>.parquet   results of chunk k of one input file (Hive-partitioned)
    embeddings/file=<key>/part-<k>.parquet  ``query_id``, ``record_index`` and ``embedding`` of those rows,
                                      in the same order (engine network reads them; results stay narrow)
    files/<key>.json                  written once every chunk of the file is written (completion)
    failed/<key>.json                 a file that failed, with the message (retried on the next run)
    summary.json, skipped.parquet     the run summary and the skipped records

Parts are written to a temporary name and renamed, so a part either exists whole or not at all; a
chunk's embeddings part is written before its results part, whose existence marks the chunk done, so a
rerun skips the parts and files that exist and never finds results without their embeddings. When the
fingerprint changes (another model, library or setting), the old results are removed before anything
is written, with a message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.errors import EngineError
from engine.core.fsutil import TEMP_GLOB, atomic_write
from engine.io.writers.parquet import table_bytes
from engine.jobs.chunks import InputFile

#: The per-chunk datasets under ``OUT`` (removed together when the job's fingerprint changes).
_DATASETS = ("results", "embeddings", "files", "failed")
#: The column of annotation tables that goes to ``embeddings/`` instead of ``results/``.
EMBEDDING = "embedding"


def embeddings_part(results_part: Path) -> Path:
    """The embeddings part beside a results part (``results/file=K/part-N`` -> ``embeddings/file=K/part-N``)."""
    return results_part.parent.parent.parent / "embeddings" / results_part.parent.name / results_part.name


def read_part(path: Path, *, embeddings: bool = False) -> pa.Table:
    """One results part; with ``embeddings`` its rows' ``embedding`` column is appended from the embeddings
    part (outputs of earlier versions kept it in the results part itself; none: results only)."""
    table = pq.read_table(path)
    side = embeddings_part(path)
    if embeddings and EMBEDDING not in table.column_names and side.exists():
        emb = pq.read_table(side, columns=[EMBEDDING]).column(EMBEDDING)
        if len(emb) == table.num_rows:
            table = table.append_column(EMBEDDING, emb)
    elif not embeddings and EMBEDDING in table.column_names:
        table = table.drop_columns([EMBEDDING])
    return table


class JobChangedError(EngineError):
    """Another job with other settings took the output directory over while this one ran."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, flushed to disk; a failure (full disk, read-only, no permission)
    removes the temporary file and is an ``OSError`` naming ``path``."""
    atomic_write(path, data, durable=True)


class JobOutput:
    """The output directory of one job (see the module docstring for its layout)."""

    def __init__(self, out: str | Path, fingerprint: dict[str, Any], *, settings: dict[str, Any] | None = None
                 ) -> None:
        self.root = Path(out)
        self.fingerprint = fingerprint
        self.settings = settings or {}
        self.invalidated: str | None = None

    def open(self) -> JobOutput:
        """Create the directory, or check its fingerprint and drop results made with other settings."""
        self.root.mkdir(parents=True, exist_ok=True)
        job = self.root / "job.json"
        if job.exists():
            old = json.loads(job.read_text()).get("fingerprint", {})
            if old != self.fingerprint:
                changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
                self.invalidated = ", ".join(changed)
                for sub in _DATASETS:
                    shutil.rmtree(self.root / sub, ignore_errors=True)
        for sub in _DATASETS:
            (self.root / sub).mkdir(exist_ok=True)
        write_atomic(job, json.dumps({"fingerprint": self.fingerprint, "settings": self.settings},
                                            indent=2, default=str).encode())
        for sub in ("results", "embeddings"):
            for stale in self.root.glob(f"{sub}/*/{TEMP_GLOB}"):
                stale.unlink(missing_ok=True)
        return self

    # --- parts -------------------------------------------------------------------------------------
    def part_path(self, file: InputFile, chunk: int) -> Path:
        return self.root / "results" / f"file={file.key}" / f"part-{chunk:06d}.parquet"

    def has_part(self, file: InputFile, chunk: int) -> bool:
        return self.part_path(file, chunk).exists()

    def write_part(self, file: InputFile, chunk: int, table: pa.Table) -> None:
        """Write one chunk's results atomically (idempotent: same chunk, same file name), after checking
        that ``job.json`` still holds this job's fingerprint (:class:`JobChangedError` otherwise). An
        ``embedding`` column goes to the chunk's embeddings part, written first and uncompressed (float
        vectors barely compress, and the results part stays narrow for the job-wide q-value pass)."""
        self.check_fingerprint()
        path = self.part_path(file, chunk)
        path.parent.mkdir(parents=True, exist_ok=True)
        if EMBEDDING in table.column_names:
            side = embeddings_part(path)
            side.parent.mkdir(parents=True, exist_ok=True)
            keys = [c for c in ("query_id", "record_index") if c in table.column_names]
            write_atomic(side, table_bytes(table.select([*keys, EMBEDDING]), compression="none"))
            table = table.drop_columns([EMBEDDING])
        write_atomic(path, table_bytes(table))

    def check_fingerprint(self) -> None:
        """Refuse to go on when ``job.json`` names another fingerprint than this job's (empty: no check)."""
        if not self.fingerprint:
            return
        try:
            current = json.loads((self.root / "job.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            current = None
        if current != json.loads(json.dumps(self.fingerprint, default=str)):
            raise JobChangedError(f"{self.root}: job.json no longer holds this job's settings (another job took "
                                  f"the directory over); stopped without writing. Rerun to resume")

    # --- files -------------------------------------------------------------------------------------
    def is_done(self, file: InputFile) -> bool:
        return (self.root / "files" / f"{file.key}.json").exists()

    def mark_done(self, file: InputFile, info: dict[str, Any]) -> None:
        (self.root / "failed" / f"{file.key}.json").unlink(missing_ok=True)
        write_atomic(self.root / "files" / f"{file.key}.json",
                            json.dumps({"path": str(file.path), "sha256": file.sha256, **info}).encode())

    def mark_failed(self, file: InputFile, message: str) -> None:
        write_atomic(self.root / "failed" / f"{file.key}.json",
                            json.dumps({"path": str(file.path), "sha256": file.sha256,
                                        "message": message}).encode())

    def done_files(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.root / "files").glob("*.json"))]

    def failed_files(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.root / "failed").glob("*.json"))]

    def read_results(self) -> pa.Table:
        """All result parts as one table (sorted by file key and chunk, i.e. in input order)."""
        parts = sorted((self.root / "results").glob("file=*/part-*.parquet"))
        if not parts:
            raise FileNotFoundError(f"{self.root}: no results yet")
        return pa.concat_tables([read_part(p) for p in parts], promote_options="default")
