"""Paths and independent parsers shared by the reader tests."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from engine.core.errors import InvalidRecordError
from engine.core.records import Spectrum

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
MASSBANK = DATA / "massbank"
DIALECTS = DATA / "dialects"
LOCAL_RAW = DATA / "raw"
BAD = DATA / "bad"
SHARED_RAW = REPO.parent / "shared" / "data" / "raw"
RAW_SUFFIXES = (".mzML", ".mzXML")


def raw_files() -> list[Path]:
    """The real runs: ../shared/data/raw when present, else the copies in tests/data/raw."""
    folder = SHARED_RAW if SHARED_RAW.is_dir() else LOCAL_RAW
    return sorted(p for p in folder.iterdir() if p.suffix in RAW_SUFFIXES and not p.name.startswith("synthetic"))


def spectra_and_errors(items: object) -> tuple[list[Spectrum], list[InvalidRecordError]]:
    spectra: list[Spectrum] = []
    errors: list[InvalidRecordError] = []
    for item in items:  # type: ignore[attr-defined]
        (spectra if isinstance(item, Spectrum) else errors).append(item)
    return spectra, errors


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def independent_ms2(path: Path) -> list[tuple[str, float | None]]:
    """(id, precursor m/z) of every MS level 2 scan, read with plain lxml (not pyteomics).

    mzML: ``ms level`` cvParam MS:1000511, precursor from ``selected ion m/z`` (MS:1000744), else the
    isolation window target (MS:1000827). mzXML: ``msLevel`` attribute and ``precursorMz`` text.
    """
    out: list[tuple[str, float | None]] = []
    if path.suffix == ".mzXML":
        for _, el in etree.iterparse(str(path), events=("end",)):
            if _local(el.tag) != "scan":
                continue
            if el.get("msLevel") == "2":
                prec = next((c for c in el if _local(c.tag) == "precursorMz"), None)
                out.append((el.get("num", ""), float(prec.text) if prec is not None and prec.text else None))
        return out
    for _, el in etree.iterparse(str(path), events=("end",)):
        if _local(el.tag) != "spectrum":
            continue
        params = {p.get("accession"): p.get("value") for p in el.iter() if _local(p.tag) == "cvParam"}
        if params.get("MS:1000511") == "2":
            value = params.get("MS:1000744") or params.get("MS:1000827")
            out.append((el.get("id", ""), float(value) if value else None))
        el.clear()
    return out
