"""``engine annotate``: annotate every MS2 spectrum of many files, resumably, locally or on Ray.

The job plans its input files (content-hashed), skips files already complete in ``OUT`` and, inside a
file, chunks already written; each chunk's results are written atomically (see
:mod:`engine.jobs.output`). The local runner does read -> embed -> search -> write in one process
(a reader thread ahead of it measured slower: parsing holds the GIL that the embedding's numpy and
torch code needs); the Ray runner (:mod:`engine.jobs.ray_runner`) runs the same stages in separate
processes on Ray Data.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.errors import InvalidInputError
from engine.core.records import IonMode
from engine.io.inputs import expand_inputs, file_sha256
from engine.io.stream import OnInvalid, ReadReport
from engine.jobs.chunks import InputFile, iter_chunks
from engine.jobs.output import JobOutput


@dataclass(frozen=True)
class JobOptions:
    """How to read the inputs (the rest of the job's settings live in :class:`AnnotateSettings`)."""

    on_invalid: OnInvalid = "skip"
    dataset: str | None = None
    default_ion_mode: IonMode | None = None


@dataclass
class JobSummary:
    """What a run did, plus the totals over everything in ``OUT``."""

    files: int = 0
    files_done_before: int = 0
    files_failed: int = 0
    spectra_read: int = 0
    annotated: int = 0
    low_quality: int = 0
    identity_hits: int = 0
    #: library matches whose calibrated probability is at least 0.5
    identity_hits_probable: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    spectra_this_run: int = 0
    invalidated: str | None = None

    def to_dict(self) -> dict[str, Any]:
        wall = self.seconds.get("total", 0.0)
        return {"files": self.files, "files_done_before": self.files_done_before,
                "files_failed": self.files_failed, "spectra_read": self.spectra_read,
                "annotated": self.annotated, "flagged_low_quality": self.low_quality,
                "identity_hits": self.identity_hits, "identity_hits_probable": self.identity_hits_probable,
                "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(self.skipped), "spectra_this_run": self.spectra_this_run,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "spectra_per_second": round(self.spectra_this_run / wall, 1) if wall > 0 else None,
                "invalidated_previous_results": self.invalidated}

    def text(self) -> str:
        d = self.to_dict()
        lines = [f"files: {d['files']} ({d['files_done_before']} already done, {d['files_failed']} failed)",
                 f"spectra read: {d['spectra_read']}, annotated: {d['annotated']}, "
                 f"flagged low quality: {d['flagged_low_quality']}, library matches: {d['identity_hits']} "
                 f"({d['identity_hits_probable']} with probability >= 0.5), "
                 f"skipped: {d['skipped']}"]
        lines += [f"  skipped {k}: {v}" for k, v in sorted(self.skipped.items())]
        if d["spectra_per_second"]:
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in d["seconds"].items() if k != "total")
            lines.append(f"this run: {d['spectra_this_run']} spectra in {d['seconds']['total']:.1f}s "
                         f"({d['spectra_per_second']:,.0f}/s; {stages})")
        return "\n".join(lines)


def plan_files(inputs: Sequence[str | Path]) -> list[InputFile]:
    """Expand the inputs and hash each file's content."""
    return [InputFile(p, file_sha256(p)) for p in expand_inputs(inputs)]


def dry_run(inputs: Sequence[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """What a run would do for each input file: ``annotate``, ``resume`` or ``done`` (no model loaded)."""
    root = Path(out)
    rows = []
    for f in plan_files(inputs):
        done = (root / "files" / f"{f.key}.json").exists()
        parts = len(list((root / "results" / f"file={f.key}").glob("part-*.parquet")))
        action = "done" if done else ("resume" if parts else "annotate")
        rows.append({"file": str(f.path), "size_mb": round(f.path.stat().st_size / 2**20, 2),
                     "action": action, "chunks_written": parts})
    return rows


def file_info(report: ReadReport, n_chunks: int) -> dict[str, Any]:
    return {"n_chunks": n_chunks, **report.to_dict(), "rejects": report.rejects[:1000]}


def run_local(files: Sequence[InputFile], output: JobOutput, annotator: Any, options: JobOptions, *,
              chunk_size: int, progress: bool = True) -> dict[str, float]:
    """Annotate ``files`` in this process; returns seconds per stage."""
    from tqdm import tqdm

    seconds: dict[str, float] = defaultdict(float)
    todo = [f for f in files if not output.is_done(f)]
    with tqdm(total=None, unit=" spectra", disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar:
        for f in todo:
            bar.set_postfix_str(f.path.name, refresh=False)
            report = ReadReport()
            try:
                t = time.perf_counter()
                chunks = iter_chunks(f, chunk_size=chunk_size, on_invalid=options.on_invalid,
                                     dataset=options.dataset, default_ion_mode=options.default_ion_mode,
                                     report=report, skip=lambda k, f=f: output.has_part(f, k))  # type: ignore[misc]
                for chunk in chunks:
                    seconds["read"] += time.perf_counter() - t
                    if not output.has_part(f, chunk.index):
                        table = annotator(chunk.batch)
                        t = time.perf_counter()
                        output.write_part(f, chunk.index, table)
                        seconds["write"] += time.perf_counter() - t
                        bar.update(chunk.batch.num_rows)
                    if chunk.last:
                        output.mark_done(f, file_info(report, chunk.index + 1))
                    t = time.perf_counter()
            except InvalidInputError as exc:
                output.mark_failed(f, str(exc))
    seconds.update(annotator.seconds)
    return dict(seconds)


def annotate(inputs: Sequence[str | Path], out: str | Path, *, spec: Any = None,
             options: JobOptions | None = None, workers: int = 0, ray_address: str | None = None,
             progress: bool = True) -> JobSummary:
    """Run an annotation job (see the module docstring) and return its summary.

    ``workers=0`` and no ``ray_address`` runs in this process; otherwise on Ray Data with ``workers``
    embedding / search actors each (local Ray unless ``ray_address`` names a cluster).
    """
    from engine.io.readers.identifiers import check_dataset
    from engine.jobs.annotator import Annotator, AnnotatorSpec

    options = options or JobOptions()
    spec = spec or AnnotatorSpec()
    if options.dataset is not None:
        check_dataset(options.dataset)
    start = time.perf_counter()
    files = plan_files(inputs)
    annotator = Annotator(spec)
    output = JobOutput(out, annotator.fingerprint()).open()
    done_before = sum(output.is_done(f) for f in files)
    counted_before = _count_rows(output)
    if workers or ray_address:
        from engine.jobs.ray_runner import run_ray

        opened = time.perf_counter() - start
        seconds = run_ray(files, output, spec, options, workers=max(workers, 1), ray_address=ray_address,
                          progress=progress)
    else:
        annotator.references.prepare()  # library peaks and fingerprints now, not inside the first chunk
        opened = time.perf_counter() - start
        seconds = run_local(files, output, annotator, options, chunk_size=spec.settings.chunk_size,
                            progress=progress)
    seconds["start"] = opened  # hashing inputs, opening model and library
    seconds["total"] = time.perf_counter() - start
    summary = summarise(output, files)
    summary.files_done_before = done_before
    summary.seconds = seconds
    summary.spectra_this_run = summary.annotated - counted_before
    summary.invalidated = output.invalidated
    (output.root / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    _write_skipped(output)
    return summary


def _count_rows(output: JobOutput) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in (output.root / "results").glob("file=*/part-*.parquet"))


def summarise(output: JobOutput, files: Sequence[InputFile]) -> JobSummary:
    """Totals over the files of this job that are complete in ``OUT``."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    s = JobSummary(files=len(files))
    keys = {f.key for f in files}
    for info in output.done_files():
        key = InputFile(Path(info["path"]), info["sha256"]).key
        if key not in keys:
            continue
        s.spectra_read += info["spectra_read"]
        s.skipped.update(info["skipped_by_reason"])
        s.files_failed += info["files_failed"]
    s.files_failed += sum(1 for info in output.failed_files()
                          if InputFile(Path(info["path"]), info["sha256"]).key in keys)
    for p in sorted((output.root / "results").glob("file=*/part-*.parquet")):
        if p.parent.name.removeprefix("file=") not in keys:
            continue
        t = pq.read_table(p, columns=["low_quality", "identity_library_id", "identity_score"])
        s.annotated += t.num_rows
        s.low_quality += int(pc.sum(t.column("low_quality")).as_py() or 0)
        s.identity_hits += t.num_rows - t.column("identity_library_id").null_count
        score = t.column("identity_score").to_numpy(zero_copy_only=False).astype(float)
        s.identity_hits_probable += int((np.nan_to_num(score, nan=0.0) >= 0.5).sum())
    return s


def _write_skipped(output: JobOutput) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.io.stream import REJECT_SCHEMA

    rows = [r for info in output.done_files() for r in info.get("rejects", [])]
    rows += [{"file": i["path"], "record": None, "reason": "file_error", "message": i["message"]}
             for i in output.failed_files()]
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), output.root / "skipped.parquet")
