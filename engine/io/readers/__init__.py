"""Streaming readers, one module per format; :func:`read_file` dispatches on the file suffix.

MGF, MSP, mzML and mzXML files may be gzip-compressed (``run.mzML.gz``): :func:`open_binary`
decompresses them while they stream.

Every reader is a generator of :data:`ReadItem`: a parsed :class:`~engine.core.records.Spectrum`, or an
:class:`~engine.core.errors.InvalidRecordError` for a record that could not be parsed (the reader goes on
with the next record). A file that cannot be read at all raises :class:`~engine.core.errors.FileFormatError`.
Readers do not validate peaks (see :mod:`engine.core.validate`) and never import torch, rdkit or faiss.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from engine.core.errors import FileFormatError
from engine.core.records import Spectrum
from engine.io.readers.files import (
    GZIP_ERRORS,
    GZIP_FORMATS,
    SUFFIXES,
    ReadItem,
    format_of,
    is_spectrum_file,
    open_binary,
)
from engine.io.readers.mgf import read_mgf
from engine.io.readers.msp import read_msp
from engine.io.readers.mzml import read_mzml, read_mzxml
from engine.io.readers.parquet import read_parquet


def read_file(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the records of one file. ``dataset`` (a MassIVE accession) turns identifiers into USIs."""
    fmt = format_of(path)
    if fmt == "mgf":
        return read_mgf(path, dataset=dataset)
    if fmt == "msp":
        return read_msp(path, dataset=dataset)
    if fmt in ("mzml", "mzxml"):
        return read_mzml(path, dataset=dataset) if fmt == "mzml" else read_mzxml(path, dataset=dataset)
    return read_parquet(path, dataset=dataset)


__all__ = ["GZIP_ERRORS", "GZIP_FORMATS", "SUFFIXES", "FileFormatError", "ReadItem", "Spectrum", "format_of",
           "is_spectrum_file", "open_binary", "read_file"]
