"""File types, compressed streams and the item type every reader yields."""

from __future__ import annotations

import gzip
import io
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


#: A ``.gz`` file that inflates more than this many times its size is refused (a decompression bomb:
#: spectrum files compress 3-20 times), once more than :data:`INFLATION_CHECKED_AFTER` bytes came out.
MAX_INFLATION_RATIO = 200
INFLATION_CHECKED_AFTER = 8 << 20


class _InflationGuard(io.RawIOBase):
    """Reads a gzip stream and refuses it once it has inflated beyond :data:`MAX_INFLATION_RATIO`."""

    def __init__(self, path: str | Path, raw: IO[bytes]) -> None:
        super().__init__()
        self._path = str(path)
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._inflated = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._gz.readinto(buffer)
        self._inflated += n
        if self._inflated > INFLATION_CHECKED_AFTER:
            compressed = max(self._raw.tell(), 1)
            if self._inflated > MAX_INFLATION_RATIO * compressed:
                raise FileFormatError(
                    f"refused: {compressed:,} compressed bytes inflate to more than {self._inflated:,} "
                    f"(over {MAX_INFLATION_RATIO} times; a decompression bomb?)", path=self._path,
                    reason="file_error")
        return n

    def close(self) -> None:
        try:
            self._gz.close()
            self._raw.close()
        finally:
            super().close()


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a spectrum file for reading bytes, decompressing a ``.gz`` file on the fly (and refusing one
    that inflates beyond :data:`MAX_INFLATION_RATIO` times its size)."""
    if str(path).lower().endswith(".gz"):
        raw = open(path, "rb")  # noqa: SIM115 (closed by the returned reader)
        try:
            return io.BufferedReader(_InflationGuard(path, raw), buffer_size=1 << 16)
        except BaseException:
            raw.close()
            raise
    return open(path, "rb")
