"""The annotation job on Ray Data: read chunks (tasks) -> embed (actors) -> search + write (actors).

Each stage is a Ray Data operator; the model lives in the embedding actors and the library index in the
search actors (each loads it once, memory-mapped). Parts are written by the search actors atomically
and idempotently, so a task retried after a worker dies rewrites the same part and nothing is lost or
duplicated; the driver marks a file complete only once every chunk part of it exists on disk.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.ipc import batch_from_ipc, batch_to_ipc
from engine.io.stream import ReadReport
from engine.jobs.artifacts import open_library_and_model
from engine.jobs.chunks import InputFile, iter_chunks
from engine.jobs.output import JobOutput

# A worker process that dies is restarted and its task retried: Ray Data's actor pools default to
# max_restarts=-1 and max_task_retries=-1 (ray/data/_internal/execution/operators/actor_pool_map_operator.py),
# which tests/jobs/test_annotate.py checks by killing a worker mid-job.


def read_chunks(item: dict[str, Any], *, out: str, chunk_size: int, options: Any) -> Iterator[dict[str, Any]]:
    """Ray ``flat_map`` stage: the chunks of one file that still need work (and always its last one)."""
    file = InputFile(Path(item["path"]), item["sha256"])
    output = JobOutput(out, {})
    report = ReadReport()
    try:
        for chunk in iter_chunks(file, chunk_size=chunk_size, on_invalid=options.on_invalid,
                                 dataset=options.dataset, default_ion_mode=options.default_ion_mode,
                                 report=report, skip=lambda k: output.has_part(file, k)):
            todo = not output.has_part(file, chunk.index)
            if todo or chunk.last:
                yield {"path": item["path"], "sha256": item["sha256"], "chunk": chunk.index, "last": chunk.last,
                       "todo": todo, "ipc": batch_to_ipc(chunk.batch) if todo else b"",
                       "report": json.dumps({"n_chunks": chunk.index + 1, **report.to_dict(),
                                             "rejects": report.rejects[:1000]}) if chunk.last else "",
                       "error": ""}
    except Exception as exc:  # a strict-mode error: the file is recorded as failed, the rest go on
        yield {"path": item["path"], "sha256": item["sha256"], "chunk": -1, "last": True, "todo": False,
               "ipc": b"", "report": "", "error": str(exc)}


class EmbedActor:
    """Holds the model; adds the embeddings of each chunk."""

    def __init__(self, spec: Any) -> None:
        # The model is resolved exactly as the search actors do, so both agree on the encoder.
        _, self.model = open_library_and_model(spec.resolved_library(), spec.model)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embs, quals, secs = [], [], []
        errors = list(rows["error"])
        todos = list(rows["todo"])
        for i, (data, todo) in enumerate(zip(rows["ipc"], rows["todo"], strict=True)):
            t = time.perf_counter()
            emb, quality = np.zeros((0, self.model.dim), np.float32), np.zeros(0, np.float32)
            batch = batch_from_ipc(bytes(data)) if todo else None
            if batch is not None and batch.num_rows:
                try:
                    emb, quality = self.model.embed_spectra(batch)
                except Exception as exc:  # the file boundary: this chunk's file fails, the job goes on
                    errors[i], todos[i] = f"{rows['path'][i]}: {type(exc).__name__}: {exc}", False
            embs.append(emb.astype(np.float32).tobytes())
            quals.append(quality.astype(np.float32).tobytes())
            secs.append(time.perf_counter() - t)
        return {**rows, "emb": np.array(embs, dtype=object), "quality": np.array(quals, dtype=object),
                "embed_s": np.array(secs), "error": np.array(errors, dtype=object), "todo": np.array(todos)}


class SearchActor:
    """Holds the library index; searches each chunk and writes its results part."""

    def __init__(self, spec: Any, out: str, fingerprint: dict[str, Any] | None = None) -> None:
        from engine.jobs.annotator import Annotator

        self.annotator = Annotator(spec)
        self.annotator.references.prepare()
        self.output = JobOutput(out, fingerprint or {})  # checked again before each part is written

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n_rows, secs = [], []
        errors = list(rows["error"])
        dim = self.annotator.model.dim
        for i, (path, sha, chunk, todo, data, emb, quality) in enumerate(zip(
                rows["path"], rows["sha256"], rows["chunk"], rows["todo"], rows["ipc"], rows["emb"],
                rows["quality"], strict=True)):
            t = time.perf_counter()
            n = 0
            if todo:
                batch = batch_from_ipc(bytes(data))
                e = np.frombuffer(bytes(emb), dtype=np.float32).reshape(-1, dim)
                q = np.frombuffer(bytes(quality), dtype=np.float32)
                try:
                    table = self.annotator.search(batch, e, q)
                except Exception as exc:  # the file boundary: this chunk's file fails, the job goes on
                    errors[i] = f"{path}: {type(exc).__name__}: {exc}"
                else:
                    self.output.write_part(InputFile(Path(str(path)), str(sha)), int(chunk), table)
                    n = table.num_rows
            n_rows.append(n)
            secs.append(time.perf_counter() - t)
        keep = ("path", "sha256", "chunk", "last", "report", "embed_s")
        return {**{k: rows[k] for k in keep}, "error": np.array(errors, dtype=object), "n": np.array(n_rows),
                "search_s": np.array(secs)}


def run_ray(files: Sequence[InputFile], output: JobOutput, spec: Any, options: Any, *, workers: int,
            ray_address: str | None, progress: bool = True) -> dict[str, float]:
    """Run the job on Ray Data with ``workers`` embedding and search actors; returns seconds per stage."""
    try:
        import ray
    except ImportError:
        from engine.core.errors import EngineError

        raise EngineError("--workers / --ray-address need Ray Data, which is not installed: "
                          "pip install 'ray[data]' (or this package's [distributed] extra)") from None
    from tqdm import tqdm

    todo = [f for f in files if not output.is_done(f)]
    if not todo:
        return {}
    started_here = False
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, 2 * workers + 1), include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
        started_here = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = 0
    try:
        pool = ray.data.ActorPoolStrategy(size=workers)
        items = [{"path": str(f.path), "sha256": f.sha256} for f in todo]
        ds: Any = ray.data.from_items(items, override_num_blocks=len(todo))
        ds = ds.flat_map(read_chunks, fn_kwargs={"out": str(output.root), "chunk_size": spec.settings.chunk_size,
                                                 "options": options}, num_cpus=0.5)
        ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"spec": spec}, batch_size=1, compute=pool,
                            num_cpus=0.5, batch_format="numpy")
        ds = ds.map_batches(SearchActor, fn_constructor_kwargs={"spec": spec, "out": str(output.root),
                                                                "fingerprint": output.fingerprint},
                            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=0.5,
                            batch_format="numpy")
        seconds = {"embed": 0.0, "search": 0.0}
        last: dict[tuple[str, str], dict[str, Any]] = {}
        failed: dict[tuple[str, str], str] = {}
        with tqdm(unit=" spectra", disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar:
            for row in ds.iter_rows():
                seconds["embed"] += float(row["embed_s"])
                seconds["search"] += float(row["search_s"])
                bar.update(int(row["n"]))
                if row["error"]:
                    failed.setdefault((str(row["path"]), str(row["sha256"])), str(row["error"]))
                if row["last"]:
                    last[(str(row["path"]), str(row["sha256"]))] = row
        for (path, sha), row in last.items():
            f = InputFile(Path(path), sha)
            if (path, sha) in failed:
                output.mark_failed(f, failed[(path, sha)])
                continue
            info = json.loads(row["report"])
            if all(output.has_part(f, k) for k in range(info["n_chunks"])):
                output.mark_done(f, info)
        return seconds
    finally:
        if started_here:
            ray.shutdown()


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
