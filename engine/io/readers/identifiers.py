"""Stable spectrum identifiers: ``<file name>:<native id>``, TITLE, or a USI for MassIVE datasets."""

from __future__ import annotations

import re
from pathlib import Path

_MSV_RE = re.compile(r"^(MSV|PXD|RMSV)\d{6,}$")


def check_dataset(dataset: str) -> str:
    """Validate a MassIVE / ProteomeXchange accession such as ``MSV000084630``."""
    if not _MSV_RE.match(dataset):
        raise ValueError(f"not a MassIVE or ProteomeXchange accession: {dataset!r} (expected e.g. MSV000084630)")
    return dataset


def usi(dataset: str, path: str | Path, *, scan: int | None = None, index: int | None = None) -> str:
    """Universal Spectrum Identifier ``mzspec:<dataset>:<file stem>:scan:<n>`` (or ``index:<n>``)."""
    stem = Path(path).stem
    if scan is not None:
        return f"mzspec:{dataset}:{stem}:scan:{scan}"
    if index is None:
        raise ValueError("a USI needs a scan number or an index")
    return f"mzspec:{dataset}:{stem}:index:{index}"


def spectrum_identifier(path: str | Path, *, dataset: str | None, title: str | None = None,
                        native_id: str | None = None, scan: int | None = None, index: int = 0) -> str:
    """Pick the stable identifier of a record.

    With ``dataset``: a USI by scan number (else by index). Without: the TITLE when the file has one,
    else ``<file name>:<native id>``, else ``<file name>:scan=<n>``, else ``<file name>:index=<n>``.
    """
    if dataset is not None:
        return usi(dataset, path, scan=scan, index=None if scan is not None else index)
    if title:
        return title
    name = Path(path).name
    if native_id:
        return f"{name}:{native_id}"
    if scan is not None:
        return f"{name}:scan={scan}"
    return f"{name}:index={index}"


_SCAN_RE = re.compile(r"(?:scan|scanId|index)=(\d+)")


def scan_from_native_id(native_id: str | None) -> int | None:
    """Scan number from a PSI native id such as ``controllerType=0 controllerNumber=1 scan=42``."""
    if not native_id:
        return None
    m = _SCAN_RE.search(native_id)
    if m:
        return int(m.group(1))
    return int(native_id) if native_id.isdigit() else None
