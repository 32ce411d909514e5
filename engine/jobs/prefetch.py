"""Read input files in a child process, one chunk ahead of the job that annotates them.

Parsing MGF / mzML text is pure Python and holds the GIL, so a reader *thread* slows the embedding and
search it should overlap; a reader *process* does not. :class:`ChunkReader` starts one child for the
whole run (spawned, so no thread state of torch or OpenMP is forked) and serves :func:`iter_chunks` of one
file at a time through a pipe: the child sends chunk ``k`` when asked and parses chunk ``k + 1`` while the
job works on ``k``. Chunks travel as Arrow IPC; the file's :class:`~engine.io.stream.ReadReport` comes
with every chunk, and an error raised while reading reaches the caller at the same point of the file as
it would in process (chunks before it are delivered first).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from engine.core.errors import EngineError
from engine.core.records import IonMode
from engine.io.ipc import batch_from_ipc, batch_to_ipc
from engine.io.stream import OnInvalid, ReadReport
from engine.jobs.chunks import Chunk, InputFile, iter_chunks

__all__ = ["ChunkReader", "ReadRequest"]


@dataclass(frozen=True)
class ReadRequest:
    """What :func:`~engine.jobs.chunks.iter_chunks` needs, in a form that crosses processes; ``skip`` must be
    picklable (e.g. a bound method of :class:`~engine.jobs.output.JobOutput`)."""

    file: InputFile
    chunk_size: int
    on_invalid: OnInvalid
    dataset: str | None
    default_ion_mode: IonMode | None
    skip: Callable[[InputFile, int], bool] | None = None

    def chunks(self, report: ReadReport) -> Iterator[Chunk]:
        """The chunks of the file, read in this process."""
        skip = (lambda k, f=self.file, s=self.skip: s(f, k)) if self.skip is not None else None
        return iter_chunks(self.file, chunk_size=self.chunk_size, on_invalid=self.on_invalid, dataset=self.dataset,
                           default_ion_mode=self.default_ion_mode, report=report, skip=skip)


class ReaderError(EngineError):
    """The reader process failed with an error that could not be sent back as it was."""


class ChunkReader:
    """A child process that reads the chunks of one file after another (see the module docstring).

    Use as a context manager; :meth:`chunks` yields the chunks of one file like
    :func:`~engine.jobs.chunks.iter_chunks`, filling ``report`` as it goes. Stopping early (a file that
    fails in the job) is fine: the next :meth:`chunks` call drops what the child read ahead."""

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._proc: Any = None

    def __enter__(self) -> ChunkReader:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_serve, args=(child,), name="engine-reader", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child (it exits on its own when the pipe closes)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(("stop", None))
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
            self._proc = None

    def chunks(self, request: ReadRequest, report: ReadReport) -> Iterator[Chunk]:
        """The chunks of ``request.file``, read in the child one ahead of the caller."""
        if self._conn is None:
            raise RuntimeError("ChunkReader is not open")
        conn = self._conn
        conn.send(("open", request))
        while True:
            conn.send(("next", None))
            try:
                kind, payload = conn.recv()
            except EOFError as exc:
                raise ReaderError(f"{request.file.path}: the reader process ended unexpectedly") from exc
            if kind == "error":
                error, state = payload
                _copy_report(state, report)
                raise _unpickle_error(error, request)
            index, last, data, state = payload
            _copy_report(state, report)
            yield Chunk(request.file, index, batch_from_ipc(data), last=last)
            if last:
                return


def _serve(conn: Connection) -> None:
    """The child: answer ``open`` / ``next`` / ``stop`` requests, reading one chunk ahead. It runs at a lower
    priority, so that the job's threads (torch, numba, faiss), which wait for each other, are not held up
    by it: it reads on the cycles they leave."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    chunks: Iterator[Chunk] | None = None
    report = ReadReport()
    ahead: tuple[str, Any] | None = None

    def read_next() -> tuple[str, Any] | None:
        assert chunks is not None
        try:
            chunk = next(chunks)
        except StopIteration:
            return None
        except BaseException as exc:  # delivered to the caller in its place
            return "error", (_pickle_error(exc), report)
        return "chunk", (chunk.index, chunk.last, batch_to_ipc(chunk.batch), report)

    while True:
        try:
            command, arg = conn.recv()
        except (EOFError, OSError):
            return
        if command == "stop":
            return
        if command == "open":
            report = ReadReport()
            chunks = arg.chunks(report)
            ahead = read_next()
            continue
        # "next": send what was read ahead, then read the one after it while the caller works
        message = ahead if ahead is not None else ("error", (_pickle_error(RuntimeError("no chunk left")), report))
        conn.send(message)
        ahead = read_next() if message[0] == "chunk" and not message[1][1] else None


def _copy_report(state: ReadReport, report: ReadReport) -> None:
    for f in fields(ReadReport):
        setattr(report, f.name, getattr(state, f.name))


def _pickle_error(exc: BaseException) -> bytes | str:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # an exception that does not survive pickling: send its text
        return f"{type(exc).__name__}: {exc}"


def _unpickle_error(error: bytes | str, request: ReadRequest) -> BaseException:
    if isinstance(error, bytes):
        return pickle.loads(error)
    return ReaderError(f"{request.file.path}: {error}")
