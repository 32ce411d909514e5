"""Expand user inputs (files, directories, globs, file lists) into an ordered list of spectrum files."""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterable
from pathlib import Path

from engine.core.errors import FileFormatError
from engine.io.readers import is_spectrum_file

LIST_SUFFIXES = (".txt", ".lst", ".list")


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Return the spectrum files named by ``inputs``, sorted within each input and without repeats.

    An input is a file, a directory (searched recursively for supported suffixes, ``.mzML.gz`` and the
    like included), a glob pattern, or
    a text file list (``.txt``/``.lst``/``.list``, or any path prefixed with ``@``) with one path per line.
    """
    seen: set[Path] = set()
    out: list[Path] = []

    def add(p: Path) -> None:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            out.append(p)

    for item in inputs:
        text = str(item)
        if text.startswith("@") or Path(text).suffix.lower() in LIST_SUFFIXES:
            list_path = Path(text[1:] if text.startswith("@") else text)
            if not list_path.is_file():
                raise FileFormatError("file list not found", path=str(list_path), reason="file_error")
            base = list_path.parent
            lines = [ln.strip() for ln in list_path.read_text().splitlines()]
            for ln in expand_inputs(str(p if (p := Path(ln)).is_absolute() else base / p)
                                    for ln in lines if ln and not ln.startswith("#")):
                add(ln)
            continue
        path = Path(text)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and is_spectrum_file(p):
                    add(p)
        elif path.is_file():
            add(path)
        elif any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileFormatError("glob matches no file", path=text, reason="file_error")
            for m in matches:
                if Path(m).is_file():
                    add(Path(m))
        else:
            raise FileFormatError("no such file or directory", path=text, reason="file_error")
    return out


def require_spectrum_files(inputs: Iterable[str | Path]) -> list[Path]:
    """:func:`expand_inputs`, raising :class:`FileFormatError` (naming the inputs) when they hold no spectrum
    file, so a job on an empty directory or a mistyped glob stops with a message instead of doing nothing."""
    items = [str(i) for i in inputs]
    files = expand_inputs(items)
    if not files:
        raise FileFormatError("no spectrum files found (mzML, mzXML, MGF, MSP, Parquet; plain or .gz)",
                              path=", ".join(items) or "(no input given)", reason="file_error")
    return files


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
