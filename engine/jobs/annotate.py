"""``engine annotate``: annotate every MS2 spectrum of many files, resumably, locally or on Ray.

The job plans its input files (content-hashed), skips files already complete in ``OUT`` and, inside a
file, chunks already written; each chunk's results are written atomically (see
:mod:`engine.jobs.output`). The local runner does embed -> search -> write in one process while a
child process parses the next chunk (:mod:`engine.jobs.prefetch`; a reader thread measured slower:
parsing holds the GIL that the embedding's numpy and torch code needs); the Ray runner
(:mod:`engine.jobs.ray_runner`) runs the same stages in separate processes on Ray Data.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.errors import EngineError, FileFormatError, InvalidInputError
from engine.core.locks import DirectoryLock
from engine.io.inputs import expand_inputs, file_sha256
from engine.io.stream import ReadReport
from engine.jobs.chunks import InputFile
from engine.jobs.output import JobOutput, write_atomic
from engine.jobs.prefetch import ChunkReader, ReadRequest
from engine.jobs.qvalues import analogue_trust, assign_q_values, count_at, job_parts
from engine.jobs.rerun import artifact_digest, forget_digest, nothing_to_do, save_digest
from engine.jobs.settings import AnnotateJobSettings, JobOptions, settings_dict

if TYPE_CHECKING:
    from engine.jobs.repository import RepositoryWriter

log = logging.getLogger(__name__)

__all__ = ["JobOptions", "JobSummary", "annotate", "annotate_job", "dry_run", "plan_files", "run_local", "summarise"]


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
    #: library matches at target-decoy q-value <= 1 % and <= 5 % (None: the library has no decoys)
    identity_hits_fdr: dict[str, int] | None = None
    fdr_note: str | None = None
    #: analogue hits at the chosen minimum reliability and the share of them estimated below Tanimoto 0.4
    analogue_trust: dict[str, Any] | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    #: spectra candidate ranking could not use, by reason (e.g. unknown_adduct), and candidates dropped
    #: for unreadable SMILES (``invalid_smiles``): kept in the results, counted here
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    spectra_this_run: int = 0
    invalidated: str | None = None
    #: the resolved settings of the job (what ``engine annotate`` read from flags and ``--config``)
    settings: dict[str, Any] = field(default_factory=dict)
    #: where the model ran in this process (``--device auto`` resolved)
    device: str | None = None
    #: the input files that failed: ``{"file": path, "message": why}``
    failed: list[dict[str, str]] = field(default_factory=list)

    def nothing_annotated(self) -> str | None:
        """Why nothing could be annotated (``engine annotate`` ends with it and a non-zero exit), or None."""
        if self.annotated:
            return None
        if self.files_failed and self.files_failed >= self.files:
            return (f"nothing annotated: all {self.files} input file(s) failed "
                    f"(first: {self.failed[0]['message'] if self.failed else '?'}; see summary.json)")
        return (f"nothing annotated: no valid MS2 spectrum in {self.files} input file(s) "
                f"({sum(self.skipped.values())} records skipped, {self.files_failed} files failed; "
                f"see skipped.parquet)")

    def to_dict(self) -> dict[str, Any]:
        wall = self.seconds.get("total", 0.0)
        return {"files": self.files, "files_done_before": self.files_done_before,
                "files_failed": self.files_failed, "spectra_read": self.spectra_read,
                "annotated": self.annotated, "flagged_low_quality": self.low_quality,
                "identity_hits": self.identity_hits, "identity_hits_probable": self.identity_hits_probable,
                "identity_hits_at_fdr": self.identity_hits_fdr, "fdr_note": self.fdr_note,
                "analogue_trust": self.analogue_trust,
                "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(self.skipped),
                "ranking_dropped": dict(sorted(self.dropped.items())), "spectra_this_run": self.spectra_this_run,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "spectra_per_second": round(self.spectra_this_run / wall, 1) if wall > 0 else None,
                "invalidated_previous_results": self.invalidated, "failed_files": self.failed,
                "device": self.device, "settings": self.settings}

    def text(self) -> str:
        d = self.to_dict()
        lines = [f"files: {d['files']} ({d['files_done_before']} already done, {d['files_failed']} failed)",
                 f"spectra read: {d['spectra_read']}, annotated: {d['annotated']}, "
                 f"flagged low quality: {d['flagged_low_quality']}, library matches: {d['identity_hits']} "
                 f"({d['identity_hits_probable']} with probability >= 0.5), "
                 f"skipped: {d['skipped']}"]
        if self.identity_hits_fdr is not None:
            lines.append("library matches at FDR " + ", ".join(f"{k}: {v}" for k, v in self.identity_hits_fdr.items())
                         + " (target-decoy q-values)")
        elif self.fdr_note:
            lines.append(f"note: {self.fdr_note}")
        if (trust := self.analogue_trust) is not None:
            share = trust["estimated_share_below_0.4"]
            lines.append(f"analogues with reliability >= {trust['min_reliability']}: {trust['hits']}"
                         + (f" (estimated {share:.0%} of them below Tanimoto 0.4)" if share is not None
                            else f" (no estimate of how many are below Tanimoto 0.4: {trust['note']})"
                            if trust.get("note") else ""))
        lines += [f"  skipped {k}: {v}" for k, v in sorted(self.skipped.items())]
        lines += [f"  candidate ranking dropped {k}: {v}" for k, v in sorted(self.dropped.items())]
        if d["spectra_per_second"]:
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in d["seconds"].items() if k != "total")
            lines.append(f"this run: {d['spectra_this_run']} spectra in {d['seconds']['total']:.1f}s "
                         f"({d['spectra_per_second']:,.0f}/s; {stages})")
        return "\n".join(lines)


def plan_files(inputs: Sequence[str | Path]) -> list[InputFile]:
    """Expand the inputs and hash each file's content (a file that cannot be read is planned as
    ``unreadable``: reading it fails that file only)."""
    return [InputFile(p, _sha256_or_unreadable(p)) for p in expand_inputs(inputs)]


def _sha256_or_unreadable(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return "unreadable"


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
              chunk_size: int, progress: bool = True, repository: RepositoryWriter | None = None) -> dict[str, float]:
    """Annotate ``files`` in this process; returns seconds per stage. With ``repository`` each chunk's spectra
    are stored there too, with the embeddings the annotation made."""
    from tqdm import tqdm

    seconds: dict[str, float] = defaultdict(float)
    todo = [f for f in files if not output.is_done(f)]
    with (tqdm(total=None, unit=" spectra", disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar,
          ChunkReader() if options.read_ahead and todo else nullcontext() as reader):
        for f in todo:
            bar.set_postfix_str(f.path.name, refresh=False)
            report = ReadReport()
            stored = repository.inserted if repository is not None else 0
            try:
                t = time.perf_counter()
                request = ReadRequest(f, chunk_size=chunk_size, on_invalid=options.on_invalid,
                                      dataset=options.dataset, default_ion_mode=options.default_ion_mode,
                                      skip=output.has_part)
                chunks = reader.chunks(request, report) if reader is not None else request.chunks(report)
                for chunk in chunks:
                    seconds["read"] += time.perf_counter() - t
                    if not output.has_part(f, chunk.index):
                        table = annotator(chunk.batch)
                        if repository is not None:
                            repository.add_annotated(chunk.batch, table)
                        t = time.perf_counter()
                        output.write_part(f, chunk.index, table)
                        seconds["write"] += time.perf_counter() - t
                        bar.update(chunk.batch.num_rows)
                    if chunk.last:
                        output.mark_done(f, file_info(report, chunk.index + 1))
                        if repository is not None:
                            repository.file_done(f.sha256, f.path, n_records=repository.inserted - stored,
                                                 n_skipped=report.n_skipped)
                    t = time.perf_counter()
            except (OSError, EngineError) as exc:
                if not isinstance(exc, InvalidInputError):
                    raise  # the output (full disk, read-only) or the job itself: not this file's fault
                output.mark_failed(f, str(exc))
            except Exception as exc:  # the file boundary: any failure processing one file fails that file only
                log.warning("%s: failed: %s: %s", f.path, type(exc).__name__, exc)
                output.mark_failed(f, f"{f.path}: {type(exc).__name__}: {exc}")
    seconds.update(annotator.seconds)
    return dict(seconds)


def annotate_job(inputs: Sequence[str | Path], out: str | Path, settings: AnnotateJobSettings) -> JobSummary:
    """Run the annotation job one :class:`AnnotateJobSettings` describes (what ``engine annotate`` does)."""
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)  # this process; Ray actors get one per CPU they hold
    return annotate(inputs, out, spec=settings.spec(), options=settings.options(), workers=settings.workers,
                    ray_address=settings.ray_address, progress=not settings.quiet,
                    settings=settings_dict(settings), repository=settings.repository, lock_wait=settings.lock_wait)


def annotate(inputs: Sequence[str | Path], out: str | Path, *, spec: Any = None,
             options: JobOptions | None = None, workers: int = 0, ray_address: str | None = None,
             progress: bool = True, settings: dict[str, Any] | None = None, lock_wait: float = 0.0,
             repository: str | Path | None = None) -> JobSummary:
    """Run an annotation job (see the module docstring) and return its summary.

    ``workers=0`` and no ``ray_address`` runs in this process; otherwise on Ray Data with ``workers``
    embedding / search actors each (local Ray unless ``ray_address`` names a cluster). ``settings``, the
    job's resolved settings, are recorded in ``job.json`` and ``summary.json`` (default: ``spec`` and
    ``options``). ``OUT`` is locked for the run (:mod:`engine.core.locks`): another writer waits up to
    ``lock_wait`` seconds or stops with a message naming the holder. A finished job rerun with nothing to
    do returns without opening the model or the library (:mod:`engine.jobs.rerun`). No input file at all
    is an error; a file that fails is recorded and the others go on (see :meth:`JobSummary.nothing_annotated`).
    """
    from engine.io.readers.identifiers import check_dataset
    from engine.jobs.annotator import AnnotatorSpec

    options = options or JobOptions()
    spec = spec or AnnotatorSpec()
    if options.dataset is not None:
        check_dataset(options.dataset)
    start = time.perf_counter()
    files = plan_files(inputs)
    if not files:
        raise FileFormatError("no spectrum files found (mzML, mzXML, MGF, MSP, plain or .gz)",
                              path=", ".join(map(str, inputs)), reason="file_error")
    if settings is None:
        settings = {**settings_dict(spec), **settings_dict(options), "workers": workers, "ray_address": ray_address}
    with DirectoryLock(out, command="engine annotate", wait=lock_wait):
        digest = artifact_digest(spec)
        if nothing_to_do(out, files, digest):  # before the model and the library are opened
            output = JobOutput(out, {})
            summary = summarise(output, files)
            summary.files_done_before = len(files)
            summary.seconds = {"total": time.perf_counter() - start}
            summary.settings = settings
            return summary
        forget_digest(out)
        summary = _run(files, out, spec, options, workers=workers, ray_address=ray_address, progress=progress,
                       settings=settings, start=start, repository=repository)
        if summary.files_failed == 0:
            save_digest(out, digest)
        return summary


def _run(files: list[InputFile], out: str | Path, spec: Any, options: JobOptions, *, workers: int,
         ray_address: str | None, progress: bool, settings: dict[str, Any], start: float,
         repository: str | Path | None = None) -> JobSummary:
    """The job, with ``OUT`` locked: open model, library and output, annotate, summarise."""
    from engine.jobs.annotator import Annotator

    annotator = Annotator(spec)
    output = JobOutput(out, annotator.fingerprint(), settings=settings).open()
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
        if repository is not None:  # the job's spectra and embeddings go to REPO too (engine.jobs.repository)
            with DirectoryLock(repository, command="engine annotate --repository"):
                from engine.jobs.repository import RepositoryWriter  # lazy: a no-op rerun skips LanceDB

                writer = RepositoryWriter(repository, dataset=options.dataset or "", dim=annotator.model.dim,
                                          encoder_hash=annotator.model.encoder_hash)
                seconds = run_local(files, output, annotator, options, chunk_size=spec.settings.chunk_size,
                                    progress=progress, repository=writer)
                writer.finish(progress=progress)
        else:
            seconds = run_local(files, output, annotator, options, chunk_size=spec.settings.chunk_size,
                                progress=progress)
    if annotator.references.has_decoys:  # q-values over every spectrum of the job
        assign_q_values(job_parts(output.root / "results", {f.key for f in files}))
    seconds["start"] = opened  # hashing inputs, opening model and library
    seconds["total"] = time.perf_counter() - start
    summary = summarise(output, files)
    summary.fdr_note = annotator.references.decoy_note
    summary.analogue_trust = analogue_trust(job_parts(output.root / "results", {f.key for f in files}),
                                            float(settings.get("analogue_min_reliability", 0.5)),
                                            annotator.model.encoder_hash,
                                            spec.settings.analogue_candidates)
    if annotator.references.has_decoys and summary.identity_hits_fdr is None:
        summary.identity_hits_fdr = count_at([])
    summary.files_done_before = done_before
    summary.seconds = seconds
    summary.spectra_this_run = summary.annotated - counted_before
    summary.invalidated = output.invalidated
    summary.settings = settings
    summary.device = str(getattr(annotator.model, "device", "cpu"))
    write_atomic(output.root / "summary.json", (json.dumps(summary.to_dict(), indent=2) + "\n").encode())
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
    failed_in_skip_mode: list[dict[str, str]] = []
    for info in output.done_files():
        key = InputFile(Path(info["path"]), info["sha256"]).key
        if key not in keys:
            continue
        s.spectra_read += info["spectra_read"]
        s.skipped.update(info["skipped_by_reason"])
        s.files_failed += info["files_failed"]
        failed_in_skip_mode += [{"file": r["file"], "message": r["message"]} for r in info.get("rejects", [])
                                if r.get("reason") == "file_error"]
    s.failed = [{"file": info["path"], "message": info["message"]} for info in output.failed_files()
                if InputFile(Path(info["path"]), info["sha256"]).key in keys]
    s.files_failed += len(s.failed)
    s.failed += failed_in_skip_mode
    for p in sorted((output.root / "results").glob("file=*/part-*.parquet")):
        if p.parent.name.removeprefix("file=") not in keys:
            continue
        names = set(pq.read_schema(p).names)
        t = pq.read_table(p, columns=["low_quality", "identity_library_id", "identity_score",
                                      "candidates_skipped_reason", "candidates_invalid"])
        s.annotated += t.num_rows
        s.low_quality += int(pc.sum(t.column("low_quality")).as_py() or 0)
        s.identity_hits += t.num_rows - t.column("identity_library_id").null_count
        score = t.column("identity_score").to_numpy(zero_copy_only=False).astype(float)
        s.identity_hits_probable += int((np.nan_to_num(score, nan=0.0) >= 0.5).sum())
        q = pq.read_table(p, columns=["identity_q_value"]).column(0) if "identity_q_value" in names else None
        if q is not None and q.null_count < len(q):
            found = count_at(q.to_numpy(zero_copy_only=False))
            s.identity_hits_fdr = {k: (s.identity_hits_fdr or {}).get(k, 0) + v for k, v in found.items()}
        s.dropped.update(r for r in t.column("candidates_skipped_reason").to_pylist() if r)
        if invalid := int(pc.sum(t.column("candidates_invalid")).as_py() or 0):
            s.dropped["invalid_smiles"] += invalid
    return s


def _write_skipped(output: JobOutput) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.io.stream import REJECT_SCHEMA

    rows = [r for info in output.done_files() for r in info.get("rejects", [])]
    rows += [{"file": i["path"], "record": None, "reason": "file_error", "message": i["message"]}
             for i in output.failed_files()]
    pq.write_table(pa.Table.from_pylist(rows, schema=REJECT_SCHEMA), output.root / "skipped.parquet")
