"""The engine's earlier mzML / mzXML readers, through pyteomics: the reference the lxml readers of
:mod:`engine.io.readers.mzml` are compared against field by field (tests only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import IonMode, Spectrum
from engine.io.readers import ReadItem
from engine.io.readers.centroid import centroid_profile
from engine.io.readers.identifiers import check_dataset, scan_from_native_id, spectrum_identifier
from engine.io.readers.mzml import _sniff

_TIME_FACTORS = {"second": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "hour": 3600.0, "h": 3600.0,
                 "millisecond": 0.001, "ms": 0.001}


def read_mzml(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the MS2 scans of an mzML file (see the module docstring)."""
    from pyteomics import mzml

    _sniff(path, ("<mzML", "<indexedmzML"), "mzML")
    if dataset is not None:
        check_dataset(dataset)
    reader = mzml.MzML(str(path), use_index=False, decode_binary=False, read_schema=False)
    yield from _stream(path, reader, _from_mzml, dataset)


def read_mzxml(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the MS2 scans of an mzXML file (see the module docstring)."""
    from pyteomics import mzxml

    _sniff(path, ("<mzXML",), "mzXML")
    if dataset is not None:
        check_dataset(dataset)
    reader = mzxml.MzXML(str(path), use_index=False, decode_binary=False, read_schema=False)
    yield from _stream(path, reader, _from_mzxml, dataset)


Converter = Callable[[dict[str, Any], str, str | None, int], "Spectrum | InvalidRecordError | None"]


def _stream(path: str | Path, reader: Any, convert: Converter, dataset: str | None) -> Iterator[ReadItem]:
    from lxml import etree

    path_str = str(path)
    position = 0
    with reader:
        iterator = iter(reader)
        while True:
            try:
                scan = next(iterator)
            except StopIteration:
                return
            except etree.XMLSyntaxError as exc:
                line = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
                raise FileFormatError(f"broken XML{line} after {position} scans (truncated or corrupt file): "
                                      f"{exc.msg if hasattr(exc, 'msg') else exc}", path=path_str,
                                      reason="file_error") from None
            except Exception as exc:  # pyteomics wraps some lxml and decoding failures
                raise FileFormatError(f"cannot read scan {position + 1}: {type(exc).__name__}: {exc}",
                                      path=path_str, reason="file_error") from None
            item = convert(scan, path_str, dataset, position)
            position += 1
            if item is not None:
                yield item


def _seconds(value: Any) -> float | None:
    """A time in seconds from a pyteomics unitfloat (seconds when the unit is unknown)."""
    if value is None:
        return None
    unit = str(getattr(value, "unit_info", "") or "").lower()
    return float(value) * _TIME_FACTORS.get(unit, 1.0)


def _decode(scan: dict[str, Any], key: str) -> np.ndarray:
    array = scan.get(key)
    if array is None:
        return np.zeros(0)
    if hasattr(array, "decode"):
        return np.asarray(array.decode())
    return np.asarray(array)


def _peaks(scan: dict[str, Any], mz_key: str, intensity_key: str, profile: bool,
           meta: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    mz = _decode(scan, mz_key).astype(np.float64)
    intensity = _decode(scan, intensity_key).astype(np.float32)
    if profile and mz.shape == intensity.shape:
        mz, intensity = centroid_profile(mz, intensity)
        meta["centroided"] = "local_maximum"
    return mz, intensity


def _text(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _from_mzml(scan: dict[str, Any], path: str, dataset: str | None, position: int) -> ReadItem | None:
    ms_level = scan.get("ms level")
    if ms_level is None:
        ms_level = 1 if "MS1 spectrum" in scan else (2 if "precursorList" in scan else 1)
    if int(ms_level) != 2:
        return None
    native_id = scan.get("id")
    index = int(scan.get("index", position))
    scan_no = scan_from_native_id(native_id)
    record = f"{native_id or 'index=' + str(index)}"
    meta: dict[str, str] = {}
    precursor_mz = charge = None
    collision_energy = None
    precursors = scan.get("precursorList", {}).get("precursor", [])
    if precursors:
        precursor = precursors[0]
        ions = precursor.get("selectedIonList", {}).get("selectedIon", [])
        ion = ions[0] if ions else {}
        value = ion.get("selected ion m/z")
        if value is None:
            value = precursor.get("isolationWindow", {}).get("isolation window target m/z")
        precursor_mz = float(value) if value is not None else None
        if ion.get("charge state") is not None:
            charge = int(ion["charge state"])
        if ion.get("peak intensity") is not None:
            meta["precursor_intensity"] = _text(ion["peak intensity"])
        activation = dict(precursor.get("activation", {}))
        if "collision energy" in activation:
            collision_energy = _text(activation.pop("collision energy"))
        elif "normalized collision energy" in activation:
            collision_energy = f"{_text(activation.pop('normalized collision energy'))} NCE"
        methods = [k for k, v in activation.items() if v == "" and not k.startswith("MS:")]
        if methods:
            meta["activation"] = "; ".join(methods)
    ion_mode: IonMode | None = ("positive" if "positive scan" in scan
                                else "negative" if "negative scan" in scan else None)
    scans = scan.get("scanList", {}).get("scan", [])
    retention_time = _seconds(scans[0].get("scan start time")) if scans else None
    if scans and scans[0].get("filter string"):
        meta["filter_string"] = str(scans[0]["filter string"])
    elif scan.get("filter string"):
        meta["filter_string"] = str(scan["filter string"])
    if scan.get("spectrum title"):
        meta["spectrum_title"] = str(scan["spectrum title"])
    try:
        mz, intensity = _peaks(scan, "m/z array", "intensity array", "profile spectrum" in scan, meta)
    except Exception as exc:
        return InvalidRecordError(f"cannot decode the peak arrays: {type(exc).__name__}: {exc}", path=path,
                                  record=record, reason="parse_error")
    return Spectrum(
        spectrum_id=spectrum_identifier(path, dataset=dataset, native_id=native_id, scan=scan_no, index=index),
        mz=mz, intensity=intensity, precursor_mz=precursor_mz, charge=charge, ion_mode=ion_mode,
        source_file=path, native_id=native_id, scan=scan_no, ms_level=2, retention_time=retention_time,
        collision_energy=collision_energy, metadata=meta,
    )


def _from_mzxml(scan: dict[str, Any], path: str, dataset: str | None, position: int) -> ReadItem | None:
    if int(scan.get("msLevel", 1)) != 2:
        return None
    num = str(scan.get("num", scan.get("id", "")))
    scan_no = int(num) if num.isdigit() else None
    record = f"scan {num}" if num else f"index {position}"
    meta: dict[str, str] = {}
    precursor_mz = charge = None
    precursors = scan.get("precursorMz") or []
    if precursors:
        precursor = precursors[0]
        if precursor.get("precursorMz") is not None:
            precursor_mz = float(precursor["precursorMz"])
        if precursor.get("precursorCharge") is not None:
            charge = int(precursor["precursorCharge"])
        if precursor.get("precursorIntensity") is not None:
            meta["precursor_intensity"] = _text(precursor["precursorIntensity"])
        if precursor.get("activationMethod"):
            meta["activation"] = str(precursor["activationMethod"])
    polarity = scan.get("polarity")
    ion_mode: IonMode | None = {"+": "positive", "-": "negative"}.get(str(polarity)) if polarity else None  # type: ignore[assignment]
    collision_energy = _text(scan["collisionEnergy"]) if scan.get("collisionEnergy") is not None else None
    if scan.get("filterLine"):
        meta["filter_string"] = str(scan["filterLine"])
    centroided = scan.get("centroided")
    profile = centroided is not None and str(centroided).lower() in ("0", "false")
    try:
        mz, intensity = _peaks(scan, "m/z array", "intensity array", profile, meta)
    except Exception as exc:
        return InvalidRecordError(f"cannot decode the peak arrays: {type(exc).__name__}: {exc}", path=path,
                                  record=record, reason="parse_error")
    return Spectrum(
        spectrum_id=spectrum_identifier(path, dataset=dataset, scan=scan_no, index=position),
        mz=mz, intensity=intensity, precursor_mz=precursor_mz, charge=charge, ion_mode=ion_mode,
        source_file=path, native_id=None, scan=scan_no, ms_level=2,
        retention_time=_seconds(scan.get("retentionTime")), collision_energy=collision_energy, metadata=meta,
    )
