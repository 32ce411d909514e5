"""Read, validate and batch spectra from files: the first stage of every job.

:func:`read_valid_spectra` applies the bad-input policy (``error``: raise at the first bad record with
file and record named; ``skip``: count it in a :class:`ReadReport` and go on).
:func:`iter_spectrum_batches` groups the kept spectra into fixed-size Arrow record batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pyarrow as pa

from engine.core.errors import FileFormatError, IncompatibleArtifactError, InvalidInputError, InvalidRecordError
from engine.core.records import IonMode, Spectrum
from engine.core.validate import validate_many
from engine.io.readers import read_file

OnInvalid = Literal["error", "skip"]
MAX_REJECTS_KEPT = 1_000_000
T = TypeVar("T")
#: Spectra validated together (vectorised peak checks).
VALIDATE_GROUP = 512

REJECT_SCHEMA = pa.schema([
    pa.field("file", pa.string()), pa.field("record", pa.string()),
    pa.field("reason", pa.string()), pa.field("message", pa.string()),
])


@dataclass
class ReadReport:
    """What a read did: files, spectra read / kept, and skipped records by reason."""

    files: int = 0
    files_failed: int = 0
    files_unchanged: int = 0
    spectra_read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejects: list[dict[str, str | None]] = field(default_factory=list)

    def reject(self, err: InvalidInputError) -> None:
        """Count a skipped record (or file) and keep its details for the Parquet report."""
        self.skipped[err.reason] += 1
        if len(self.rejects) < MAX_REJECTS_KEPT:
            self.rejects.append({"file": err.path, "record": err.record, "reason": err.reason,
                                 "message": err.detail})

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "files_failed": self.files_failed,
                "files_unchanged": self.files_unchanged, "spectra_read": self.spectra_read,
                "kept": self.kept, "skipped": self.n_skipped, "skipped_by_reason": dict(self.skipped)}

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"files: {self.files} ({self.files_failed} failed, {self.files_unchanged} unchanged)",
                 f"spectra read: {self.spectra_read}, kept: {self.kept}, skipped: {self.n_skipped}"]
        lines += [f"  skipped {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        return "\n".join(lines)

    def write_parquet(self, path: str | Path) -> None:
        """Write the skipped records (file, record, reason, message) as Parquet."""
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.rejects, schema=REJECT_SCHEMA)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def read_valid_spectra(path: str | Path, *, on_invalid: OnInvalid = "error", dataset: str | None = None,
                       default_ion_mode: IonMode | None = None,
                       report: ReadReport | None = None) -> Iterator[Spectrum]:
    """Yield the valid spectra of one file, applying the bad-input policy."""
    for _, spectrum in read_indexed_spectra(path, on_invalid=on_invalid, dataset=dataset,
                                            default_ion_mode=default_ion_mode, report=report):
        yield spectrum


def keep_valid(spectra: list[Spectrum], *, path: str, records: list[str], on_invalid: OnInvalid,
               default_ion_mode: IonMode | None, report: ReadReport) -> Iterator[tuple[int, Spectrum]]:
    """Validate ``spectra`` (named ``records`` of ``path`` in messages) as one group and yield ``(position,
    spectrum)`` for the valid ones, repaired where repairable; a bad one raises (``error``) or is counted in
    ``report`` (``skip``)."""
    checked = validate_many(spectra, path=path, records=records, default_ion_mode=default_ion_mode)
    for position, result in enumerate(checked):
        if isinstance(result, InvalidRecordError):
            if on_invalid == "error":
                raise result
            report.reject(result)
        else:
            report.kept += 1
            yield position, result


def read_indexed_spectra(path: str | Path, *, on_invalid: OnInvalid = "error", dataset: str | None = None,
                         default_ion_mode: IonMode | None = None,
                         report: ReadReport | None = None) -> Iterator[tuple[int, Spectrum]]:
    """Yield ``(record index in file, spectrum)`` for the valid spectra of one file."""
    report = report if report is not None else ReadReport()
    spath = str(path)
    report.files += 1
    pending: list[tuple[int, Spectrum]] = []

    def flush() -> Iterator[tuple[int, Spectrum]]:
        kept = keep_valid([s for _, s in pending], path=spath, records=[_record_name(s, i) for i, s in pending],
                          on_invalid=on_invalid, default_ion_mode=default_ion_mode, report=report)
        for position, spectrum in kept:
            yield pending[position][0], spectrum
        pending.clear()

    try:
        for index, item in enumerate(read_file(path, dataset=dataset)):
            report.spectra_read += 1
            if isinstance(item, InvalidRecordError):
                yield from flush()
                if on_invalid == "error":
                    raise item
                report.reject(item)
                continue
            pending.append((index, item))
            if len(pending) >= VALIDATE_GROUP:
                yield from flush()
        yield from flush()
    except FileFormatError as err:
        yield from flush()
        report.files_failed += 1
        if on_invalid == "error":
            raise
        report.reject(err)
    except InvalidRecordError:
        raise  # strict mode's first bad record
    except Exception as exc:  # the file boundary: any failure of a reader fails its file only
        yield from flush()
        report.files_failed += 1
        if isinstance(exc, IncompatibleArtifactError):
            detail = str(exc)
        elif isinstance(exc, (OSError, UnicodeDecodeError)):
            detail = f"cannot read file: {exc}"
        else:
            detail = f"cannot read file: {type(exc).__name__}: {exc}"
        file_err = FileFormatError(str(detail), path=spath, reason="file_error")
        if on_invalid == "error":
            raise file_err from None
        report.reject(file_err)


def _record_name(spectrum: Spectrum, index: int) -> str:
    return f"{spectrum.spectrum_id!r} (record {index + 1})"


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group an iterable into lists of at most ``size`` items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def iter_spectrum_batches(paths: Iterable[str | Path], *, batch_size: int = 8192,
                          on_invalid: OnInvalid = "error", dataset: str | None = None,
                          default_ion_mode: IonMode | None = None,
                          report: ReadReport | None = None) -> Iterator[pa.RecordBatch]:
    """Stream valid spectra of many files as record batches of :data:`engine.core.schema.SPECTRUM_SCHEMA`."""
    from engine.core.schema import spectra_to_batch

    for path in paths:
        spectra = read_valid_spectra(path, on_invalid=on_invalid, dataset=dataset,
                                     default_ion_mode=default_ion_mode, report=report)
        for chunk in batched(spectra, batch_size):
            yield spectra_to_batch(chunk)
