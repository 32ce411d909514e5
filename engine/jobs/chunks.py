"""Split input files into deterministic chunks of spectra: the unit of work and of resumption.

Chunk ``k`` of a file holds its valid spectra ``k*chunk_size .. (k+1)*chunk_size-1`` in reading order,
so the same file always splits the same way and a rerun can skip the chunks already written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from engine.core.records import IonMode, Spectrum
from engine.core.schema import SPECTRUM_SCHEMA, spectra_to_batch
from engine.io.stream import OnInvalid, ReadReport, batched, read_indexed_spectra


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file and the content hash that keys its results."""

    path: Path
    sha256: str

    @property
    def key(self) -> str:
        """Directory-safe key: file stem plus the first 12 hex digits of the content hash."""
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.path.stem)[:80]
        return f"{stem}-{self.sha256[:12]}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of valid spectra of one file (an empty batch when skipped or when the file has none)."""

    file: InputFile
    index: int
    batch: pa.RecordBatch
    last: bool


def empty_batch() -> pa.RecordBatch:
    """A record batch of the spectrum schema with no rows."""
    return pa.RecordBatch.from_pylist([], schema=SPECTRUM_SCHEMA)


def iter_chunks(file: InputFile, *, chunk_size: int, on_invalid: OnInvalid, dataset: str | None,
                default_ion_mode: IonMode | None, report: ReadReport,
                skip: Callable[[int], bool] | None = None) -> Iterator[Chunk]:
    """Yield the chunks of ``file``; chunks for which ``skip(index)`` is true are read, not converted.

    ``last`` is true on the final chunk; a file without any valid spectrum yields one empty chunk 0 so
    that its completion can be recorded like any other.
    """
    items = read_indexed_spectra(file.path, on_invalid=on_invalid, dataset=dataset,
                                 default_ion_mode=default_ion_mode, report=report)
    pending: tuple[int, list[tuple[int, Spectrum]]] | None = None
    for index, group in enumerate(batched(items, chunk_size)):
        if pending is not None:
            yield _make(file, *pending, last=False, skip=skip)
        pending = (index, group)
    if pending is None:
        yield Chunk(file, 0, empty_batch(), last=True)
    else:
        yield _make(file, *pending, last=True, skip=skip)


def _make(file: InputFile, index: int, group: list[tuple[int, Spectrum]], *, last: bool,
          skip: Callable[[int], bool] | None) -> Chunk:
    if skip is not None and skip(index):
        return Chunk(file, index, empty_batch(), last=last)
    batch = spectra_to_batch([s for _, s in group], file_sha256=file.sha256,
                             record_indices=[i for i, _ in group])
    return Chunk(file, index, batch, last=last)
