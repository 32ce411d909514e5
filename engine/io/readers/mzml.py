"""Streaming mzML and mzXML readers (lxml ``iterparse``, one spectrum element in memory at a time).

Only MS level 2 scans are yielded; MS1 and MS3+ scans are skipped (their binary arrays are not even
decoded). For each MS2 scan:

- precursor m/z: the first selected ion's m/z, else the isolation window target m/z (SCIEX files);
  charge: the selected ion's charge state; polarity from the ``positive scan`` / ``negative scan``
  cvParams (mzML) or the ``polarity`` attribute (mzXML);
- retention time in seconds whatever unit the file uses (mzML ``scan start time`` in seconds or
  minutes, mzXML ``PT...S`` durations);
- collision energy as text (``"40.0"``, or ``"35.0 NCE"`` for a normalised one); the activation
  method, precursor intensity, filter string and spectrum title go to metadata;
- the identifier is ``<file>:<native id>`` for mzML and ``<file>:scan=<num>`` for mzXML, or a USI by
  scan number (by index when the native id has no scan number) with a ``dataset``.

cvParams and userParams are read by name, those of ``referenceableParamGroup`` references included, and
their values typed as numbers where they parse (as pyteomics does; the tests compare every field with pyteomics'
reading). Binary arrays may be zlib-compressed or MS-Numpress encoded (pynumpress), 16/32/64-bit floats
or 32/64-bit integers; mzXML peaks are network-order m/z-intensity pairs. Profile-mode scans (mzML
``profile spectrum``, mzXML ``centroided="0"``) are centroided with the local-maximum picker of
:mod:`engine.io.readers.centroid` and marked with metadata ``centroided=local_maximum``.

Files ending in ``.gz`` are decompressed while streaming. A file that is not well-formed XML (truncated,
garbage), empty, a corrupt ``.gz``, or not mzML / mzXML at all raises
:class:`~engine.core.errors.FileFormatError` naming the file and the line; the scans read before the damage
stay yielded. A scan whose arrays cannot be decoded is an ``InvalidRecordError`` (``parse_error``).
Reading parses each spectrum element once with lxml's C parser, several times faster than pyteomics'
generic element-to-dict conversion (``benchmarks/ingest``).
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import IonMode, Spectrum
from engine.io.readers.centroid import centroid_profile
from engine.io.readers.files import GZIP_ERRORS, ReadItem, open_binary
from engine.io.readers.identifiers import check_dataset, scan_from_native_id, spectrum_identifier
from engine.io.readers.peaks import as_intensities

_TIME_FACTORS = {"second": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "hour": 3600.0, "h": 3600.0,
                 "millisecond": 0.001, "ms": 0.001, "UO:0000010": 1.0, "UO:0000031": 60.0,
                 "UO:0000032": 3600.0, "UO:0000028": 0.001}
_SNIFF_BYTES = 8192
_DTYPES = {"64-bit float": "<f8", "32-bit float": "<f4", "16-bit float": "<f2", "64-bit integer": "<i8",
           "32-bit integer": "<i4"}
_DURATION = re.compile(r"^\s*(-)?P(?:(\d+(?:\.\d*)?)D)?(?:T(?:(\d+(?:\.\d*)?)H)?(?:(\d+(?:\.\d*)?)M)?"
                       r"(?:(\d+(?:\.\d*)?)S)?)?\s*$")

Params = dict[str, Any]
Groups = dict[str, list[tuple[str, Any, str | None]]]


def read_mzml(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the MS2 scans of an mzML file (see the module docstring)."""
    _sniff(path, ("<mzML", "<indexedmzML"), "mzML")
    if dataset is not None:
        check_dataset(dataset)
    groups: Groups = {}

    def convert(element: Any, path_str: str, position: int) -> ReadItem | None:
        if _local(element.tag) == "referenceableParamGroup":
            groups[str(element.get("id"))] = _cv_list(element, groups)
            return None
        return _from_mzml(element, groups, path_str, dataset, position)

    yield from _stream(path, ("{*}spectrum", "{*}referenceableParamGroup"), convert, "run")


def read_mzxml(path: str | Path, *, dataset: str | None = None) -> Iterator[ReadItem]:
    """Stream the MS2 scans of an mzXML file (see the module docstring)."""
    _sniff(path, ("<mzXML",), "mzXML")
    if dataset is not None:
        check_dataset(dataset)

    def convert(element: Any, path_str: str, position: int) -> ReadItem | None:
        return _from_mzxml(element, path_str, dataset, position)

    yield from _stream(path, ("{*}scan",), convert, "msRun")


def _sniff(path: str | Path, roots: tuple[str, ...], kind: str) -> None:
    """Refuse early a file that is empty, binary or has no ``roots`` element near its start."""
    try:
        with open_binary(path) as handle:
            head = handle.read(_SNIFF_BYTES)
    except GZIP_ERRORS as exc:
        raise FileFormatError(f"cannot decompress: {type(exc).__name__}: {exc}", path=str(path),
                              reason="file_error") from None
    if not head:
        raise FileFormatError("empty file (0 bytes)", path=str(path), reason="file_error")
    text = head.decode("utf-8", "replace")
    if not text.lstrip("\ufeff \t\r\n").startswith("<"):
        raise FileFormatError(f"not XML (starts with {text[:20]!r}); not an {kind} file?", path=str(path),
                              reason="file_error")
    if not any(root in text for root in roots):
        raise FileFormatError(f"no <{kind}> element in the first {_SNIFF_BYTES} bytes; not an {kind} file?",
                              path=str(path), reason="file_error")


Converter = Callable[[Any, str, int], "ReadItem | None"]


def _stream(path: str | Path, tags: tuple[str, ...], convert: Converter, run: str) -> Iterator[ReadItem]:
    """Convert every element named in ``tags`` at its end; spectra (and scans) are counted from 0 and
    freed once converted, so memory stays at one spectrum whatever the file size. Reading stops at the
    end of the ``run`` element: what follows (the offset index of indexed files) holds no spectra."""
    path_str = str(path)
    with open_binary(path) as handle:   # closed here even when reading stops at the run's end
        yield from _elements(handle, path_str, tags, convert, run)


def _elements(source: Any, path_str: str, tags: tuple[str, ...], convert: Converter, run: str
              ) -> Iterator[ReadItem]:
    from lxml import etree

    position = 0
    context = etree.iterparse(source, events=("end",), tag=(*tags, "{*}" + run), huge_tree=True,
                              remove_comments=True, resolve_entities=False, no_network=True)
    iterator = iter(context)
    while True:
        try:
            _, element = next(iterator)
        except StopIteration:
            return
        except etree.XMLSyntaxError as exc:
            line = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            raise FileFormatError(f"broken XML{line} after {position} scans (truncated or corrupt file): "
                                  f"{exc.msg if hasattr(exc, 'msg') else exc}", path=path_str,
                                  reason="file_error") from None
        except GZIP_ERRORS as exc:   # a corrupt or truncated .gz
            raise FileFormatError(f"cannot decompress after {position} scans: {type(exc).__name__}: {exc}",
                                  path=path_str, reason="file_error") from None
        if _local(element.tag) == run:
            return
        counted = _local(element.tag) in ("spectrum", "scan")
        try:
            item = convert(element, path_str, position)
        except (ValueError, TypeError, KeyError) as exc:   # a malformed attribute or value: lose this record only
            name = element.get("id") or element.get("num") or f"index={position}"
            item = InvalidRecordError(f"cannot read the record: {type(exc).__name__}: {exc}", path=path_str,
                                      record=str(name), reason="parse_error")
        if counted:
            position += 1
            parent = element.getparent()
            if parent is not None and _local(parent.tag) == "scan":
                element.clear(keep_tail=False)   # a nested mzXML scan: its parent still needs its own children
            else:
                _release(element)
        if item is not None:
            yield item


def _release(element: Any) -> None:
    """Free a converted element and the siblings before it (iterparse keeps the tree otherwise)."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _typed(value: str) -> Any:
    """A cvParam value as pyteomics types it: a float when it parses as one, else the text."""
    try:
        return float(value)
    except ValueError:
        return value


def _cv_list(element: Any, groups: Groups) -> list[tuple[str, Any, str | None]]:
    """(name, typed value, unit) of the element's own cvParams and userParams (an ``xsd:string`` userParam
    stays text), referenced groups expanded in place."""
    out: list[tuple[str, Any, str | None]] = []
    for child in element:
        name = _local(child.tag)
        if name in ("cvParam", "userParam"):
            key = child.get("name") or child.get("accession") or ""
            value = child.get("value", "")
            typed = value if name == "userParam" and child.get("type") == "xsd:string" else _typed(value)
            out.append((key, typed, child.get("unitName") or child.get("unitAccession")))
        elif name == "referenceableParamGroupRef":
            out.extend(groups.get(str(child.get("ref")), []))
    return out


def _cv(element: Any, groups: Groups) -> Params:
    return {name: value for name, value, _ in _cv_list(element, groups)}


def _first(element: Any, name: str) -> Any:
    """The first descendant element named ``name`` (any namespace), or None."""
    return next(element.iter("{*}" + name), None)


def _text(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _mzml_array(array: Any, groups: Groups) -> tuple[str | None, np.ndarray]:
    """Kind (``m/z array``, ``intensity array`` or other) and decoded values of a binaryDataArray."""
    names = [name for name, _, _ in _cv_list(array, groups)]
    kind = next((n for n in names if n in ("m/z array", "intensity array")), None)
    if kind is None:
        return None, np.zeros(0)
    binary = _first(array, "binary")
    text = (binary.text or "") if binary is not None else ""
    raw = base64.b64decode(text) if text.strip() else b""
    if not raw:
        return kind, np.zeros(0)
    zlibbed = any(n == "zlib compression" or n.endswith("followed by zlib compression") for n in names)
    if zlibbed:
        raw = zlib.decompress(raw)
    numpress = next((n for n in names if n.startswith("MS-Numpress")), None)
    if numpress is not None:
        import pynumpress

        decoders = {"linear prediction": pynumpress.decode_linear, "short logged float": pynumpress.decode_slof,
                    "positive integer": pynumpress.decode_pic}
        decoder = next((f for key, f in decoders.items() if key in numpress), None)
        if decoder is None:
            raise ValueError(f"unknown compression {numpress!r}")
        return kind, np.asarray(decoder(np.frombuffer(raw, dtype=np.uint8)), dtype=np.float64)
    dtype = next((_DTYPES[n] for n in names if n in _DTYPES), "<f8")
    return kind, np.frombuffer(raw, dtype=dtype)


def _from_mzml(spectrum: Any, groups: Groups, path: str, dataset: str | None, position: int) -> ReadItem | None:
    params = _cv(spectrum, groups)
    description = _first(spectrum, "spectrumDescription")   # mzML 1.0 keeps some params there
    if description is not None:
        params = {**_cv(description, groups), **params}
    precursor_list = _first(spectrum, "precursorList")
    ms_level = params.get("ms level")
    if ms_level is None:
        ms_level = 1 if "MS1 spectrum" in params else (2 if precursor_list is not None else 1)
    if int(ms_level) != 2:
        return None
    native_id = spectrum.get("id")
    index = int(spectrum.get("index", position))
    scan_no = scan_from_native_id(native_id)
    record = f"{native_id or 'index=' + str(index)}"
    meta: dict[str, str] = {}
    precursor_mz = charge = None
    collision_energy = None
    precursor = _first(precursor_list, "precursor") if precursor_list is not None else None
    if precursor is not None:
        selected = _first(precursor, "selectedIon")
        ion = _cv(selected, groups) if selected is not None else {}
        value = ion.get("selected ion m/z")
        if value is None:
            window = _first(precursor, "isolationWindow")
            value = _cv(window, groups).get("isolation window target m/z") if window is not None else None
        precursor_mz = float(value) if value is not None else None
        if ion.get("charge state") is not None:
            charge = int(ion["charge state"])
        if ion.get("peak intensity") is not None:
            meta["precursor_intensity"] = _text(ion["peak intensity"])
        element = _first(precursor, "activation")
        activation = _cv(element, groups) if element is not None else {}
        if "collision energy" in activation:
            collision_energy = _text(activation.pop("collision energy"))
        elif "normalized collision energy" in activation:
            collision_energy = f"{_text(activation.pop('normalized collision energy'))} NCE"
        methods = [k for k, v in activation.items() if v == "" and not k.startswith("MS:")]
        if methods:
            meta["activation"] = "; ".join(methods)
    ion_mode: IonMode | None = ("positive" if "positive scan" in params
                                else "negative" if "negative scan" in params else None)
    retention_time = None
    scan_element = _first(spectrum, "scan")
    if scan_element is not None:
        for name, value, unit in _cv_list(scan_element, groups):
            if name == "scan start time" and retention_time is None:
                retention_time = float(value) * _TIME_FACTORS.get(str(unit or ""), 1.0)
            elif name == "filter string" and value:
                meta["filter_string"] = str(value)
    if "filter_string" not in meta and params.get("filter string"):
        meta["filter_string"] = str(params["filter string"])
    if params.get("spectrum title"):
        meta["spectrum_title"] = str(params["spectrum title"])
    try:
        arrays: dict[str, np.ndarray] = {}
        for array in spectrum.iter("{*}binaryDataArray"):
            kind, values = _mzml_array(array, groups)
            if kind is not None and kind not in arrays:
                arrays[kind] = values
        mz, intensity = _peaks(arrays.get("m/z array"), arrays.get("intensity array"),
                               "profile spectrum" in params, meta)
    except Exception as exc:
        return InvalidRecordError(f"cannot decode the peak arrays: {type(exc).__name__}: {exc}", path=path,
                                  record=record, reason="parse_error")
    return Spectrum(
        spectrum_id=spectrum_identifier(path, dataset=dataset, native_id=native_id, scan=scan_no, index=index),
        mz=mz, intensity=intensity, precursor_mz=precursor_mz, charge=charge, ion_mode=ion_mode,
        source_file=path, native_id=native_id, scan=scan_no, ms_level=2, retention_time=retention_time,
        collision_energy=collision_energy, metadata=meta,
    )


def _peaks(mz: np.ndarray | None, intensity: np.ndarray | None, profile: bool, meta: dict[str, str]
           ) -> tuple[np.ndarray, np.ndarray]:
    mz = (mz if mz is not None else np.zeros(0)).astype(np.float64)
    intensity = as_intensities(intensity if intensity is not None else np.zeros(0))
    if profile and mz.shape == intensity.shape:
        mz, intensity = centroid_profile(mz, intensity)
        meta["centroided"] = "local_maximum"
    return mz, intensity


def _duration_seconds(value: str | None) -> float | None:
    """Seconds of an xs:duration (``PT12.5S``, ``PT1M2S``), or of a plain number of seconds."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match is None or not any(match.groups()[1:]):
        return float(value)
    sign, days, hours, minutes, seconds = match.groups()
    total = (float(days or 0) * 86400 + float(hours or 0) * 3600 + float(minutes or 0) * 60
             + float(seconds or 0))
    return -total if sign else total


def _mzxml_peaks(peaks: Any) -> tuple[np.ndarray, np.ndarray]:
    """m/z and intensity of an mzXML ``peaks`` element (network byte order pairs, optionally zlib)."""
    text = peaks.text or ""
    raw = base64.b64decode(text) if text.strip() else b""
    if raw and (peaks.get("compressionType") or "none").lower() == "zlib":
        raw = zlib.decompress(raw)
    bits = peaks.get("precision", "32")
    order = ">" if (peaks.get("byteOrder") or "network").lower() in ("network", "big") else "<"
    values = np.frombuffer(raw, dtype=f"{order}f{8 if bits == '64' else 4}")
    return values[0::2], values[1::2]


def _from_mzxml(scan: Any, path: str, dataset: str | None, position: int) -> ReadItem | None:
    if int(float(scan.get("msLevel", 1))) != 2:
        return None
    num = str(scan.get("num", scan.get("id", "")))
    scan_no = int(num) if num.isdigit() else None
    record = f"scan {num}" if num else f"index {position}"
    meta: dict[str, str] = {}
    precursor_mz = charge = None
    children = {_local(child.tag): child for child in reversed(list(scan))}   # first of each name
    precursor = children.get("precursorMz")
    if precursor is not None:
        if (precursor.text or "").strip():
            precursor_mz = float(precursor.text)
        if precursor.get("precursorCharge") is not None:
            charge = int(float(precursor.get("precursorCharge")))
        if precursor.get("precursorIntensity") is not None:
            meta["precursor_intensity"] = _text(_typed(precursor.get("precursorIntensity")))
        if precursor.get("activationMethod"):
            meta["activation"] = str(precursor.get("activationMethod"))
    polarity = scan.get("polarity")
    ion_mode: IonMode | None = {"+": "positive", "-": "negative"}.get(str(polarity)) if polarity else None  # type: ignore[assignment]
    energy = scan.get("collisionEnergy")
    collision_energy = _text(_typed(energy)) if energy is not None else None
    if scan.get("filterLine"):
        meta["filter_string"] = str(scan.get("filterLine"))
    centroided = scan.get("centroided")
    profile = centroided is not None and str(centroided).lower() in ("0", "false")
    try:
        element = children.get("peaks")
        mz, intensity = _mzxml_peaks(element) if element is not None else (None, None)
        mz, intensity = _peaks(mz, intensity, profile, meta)
    except Exception as exc:
        return InvalidRecordError(f"cannot decode the peak arrays: {type(exc).__name__}: {exc}", path=path,
                                  record=record, reason="parse_error")
    return Spectrum(
        spectrum_id=spectrum_identifier(path, dataset=dataset, scan=scan_no, index=position),
        mz=mz, intensity=intensity, precursor_mz=precursor_mz, charge=charge, ion_mode=ion_mode,
        source_file=path, native_id=None, scan=scan_no, ms_level=2,
        retention_time=_duration_seconds(scan.get("retentionTime")), collision_energy=collision_energy,
        metadata=meta,
    )
