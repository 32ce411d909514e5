"""File types, compressed streams and the item type every reader yields."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum

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
