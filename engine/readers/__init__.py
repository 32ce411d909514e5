"""Streaming readers, one module per format; :func:`read_file` dispatches on the file suffix.

MGF, MSP, mzML and mzXML files may be gzip-compressed (``run.mzML.gz``): :func:`open_binary`
decompresses them while they stream.

Every reader is a generator of :data:`ReadItem`: a parsed :class:`~engine.records.Spectrum`, or an
:class:`~engine.errors.InvalidRecordError` for a record that could not be parsed (the reader goes on
with the next record). A file that cannot be read at all raises :class:`~engine.errors.FileFormatError`.
Readers do not validate peaks (see :mod:`engine.validate`) and never import torch, rdkit or faiss.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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


#: Formats also read gzip-compressed (``run.mzML.gz``), decompressed while streaming.
GZIP_FORMATS = ("mgf", "msp", "mzml", "mzxml")


def format_of(path: str | Path) -> str:
    """Return the format name of ``path`` from its suffix (``.gz`` after a text or XML format's suffix
    counts as that format, compressed), or raise :class:`FileFormatError`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gz":
        inner = Path(Path(path).stem).suffix.lower()
        if SUFFIXES.get(inner) in GZIP_FORMATS:
            return SUFFIXES[inner]
        raise FileFormatError(f"unsupported compressed file type {inner + '.gz' if inner else '.gz'!r}; supported: "
                              f"{', '.join(s + '.gz' for s, f in sorted(SUFFIXES.items()) if f in GZIP_FORMATS)}",
                              path=str(path), reason="file_error")
    if suffix not in SUFFIXES:
        raise FileFormatError(f"unsupported file type {suffix or '(none)'!r}; supported: "
                              f"{', '.join(sorted(SUFFIXES))} (and .gz of the text and XML formats)",
                              path=str(path), reason="file_error")
    return SUFFIXES[suffix]


def is_spectrum_file(path: str | Path) -> bool:
    """Whether ``path`` has a suffix some reader takes (see :func:`format_of`)."""
    try:
        format_of(path)
    except FileFormatError:
        return False
    return True


#: What reading a corrupt or truncated ``.gz`` raises (readers turn it into a FileFormatError naming the file).
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a spectrum file for reading bytes, decompressing a ``.gz`` file on the fly."""
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile reads like IO[bytes]
    return open(path, "rb")


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


__all__ = ["GZIP_ERRORS", "GZIP_FORMATS", "SUFFIXES", "FileFormatError", "ReadItem", "Spectrum", "format_of",
           "is_spectrum_file", "open_binary", "read_file"]
