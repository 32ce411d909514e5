"""Streaming readers, one module per format; :func:`read_file` dispatches on the file suffix.

Every reader is a generator of :data:`ReadItem`: a parsed :class:`~engine.records.Spectrum`, or an
:class:`~engine.errors.InvalidRecordError` for a record that could not be parsed (the reader goes on
with the next record). A file that cannot be read at all raises :class:`~engine.errors.FileFormatError`.
Readers do not validate peaks (see :mod:`engine.validate`) and never import torch, rdkit or faiss.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from engine.errors import FileFormatError, InvalidRecordError
from engine.records import Spectrum

ReadItem = Spectrum | InvalidRecordError

SUFFIXES: dict[str, str] = {
    ".mgf": "mgf",
    ".msp": "msp",
    ".mzml": "mzml",
    ".mzxml": "mzxml",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def format_of(path: str | Path) -> str:
    """Return the format name of ``path`` from its suffix, or raise :class:`FileFormatError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise FileFormatError(f"unsupported file type {suffix or '(none)'!r}; supported: "
                              f"{', '.join(sorted(SUFFIXES))}", path=str(path), reason="file_error")
    return SUFFIXES[suffix]


def read_file(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the records of one file. ``dataset`` (a MassIVE accession) turns identifiers into USIs."""
    fmt = format_of(path)
    if fmt == "mgf":
        from engine.readers.mgf import read_mgf

        return read_mgf(path, dataset=dataset)
    if fmt == "msp":
        from engine.readers.msp import read_msp

        return read_msp(path, dataset=dataset)
    if fmt in ("mzml", "mzxml"):
        from engine.readers.mzml import read_mzml, read_mzxml

        return read_mzml(path, dataset=dataset) if fmt == "mzml" else read_mzxml(path, dataset=dataset)
    from engine.readers.parquet import read_parquet

    return read_parquet(path, dataset=dataset)


__all__ = ["SUFFIXES", "FileFormatError", "ReadItem", "Spectrum", "format_of", "read_file"]
