"""Streaming MSP reader: MassBank, NIST and MS-DIAL libraries.

A record is a block of ``Key: value`` lines, then ``Num Peaks: n`` and the peak lines, ended by a blank
line (or by the next ``Name:``, or the end of the file). Keys are case-insensitive; each
:class:`~engine.core.records.Spectrum` field comes from the first of its aliases present (:data:`ALIASES`),
every other key (``Comments``, ``Synon``, ``Instrument_type`` ...) is kept in ``Spectrum.metadata`` as
written; a key given more than once (``Synon``) keeps all values joined by ``"; "``.

Peak lines hold ``mz intensity`` separated by spaces or a tab, or several pairs per line separated by
``;`` (NIST: ``85 999; 86 12;``) or written ``mz:intensity``, optionally followed by a quoted annotation
(``85.0284 999 "p-C5H5O2"``). A peak count that differs from ``Num Peaks`` is a ``parse_error`` (a
truncated record). Specifics:

- ``Ion_mode`` ``P``/``N``/``Positive``/``Negative`` is normalised; other text is kept for validation.
- ``N/A`` and similar placeholders in structure and adduct fields mean no value.
- ``RETENTIONTIME`` is in minutes (MS-DIAL's convention) and converted to seconds; ``RTINSECONDS`` is
  seconds. A value that is not a number stays in metadata.
- ``Spectrum_type: MS1`` (or any MS level other than 2) records are skipped silently.
- The identifier is ``DB#`` (MassBank accession) / ``ACCESSION`` / ``SPECTRUMID`` / ``ID``, else
  ``<file>:index=<n>`` (0-based record index); with a ``dataset`` a USI by index.

As in the MGF reader, bytes that are not UTF-8 make their record an ``InvalidRecordError`` naming the
line; an empty, binary or non-MSP file raises :class:`~engine.core.errors.FileFormatError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.io.readers.fields import header_charge, header_retention_time, optional_text, parse_ion_mode
from engine.io.readers.files import ReadItem
from engine.io.readers.identifiers import check_dataset, spectrum_identifier
from engine.io.readers.peaks import PeakLineError, parse_peak_lines, parse_peak_text
from engine.io.readers.textio import CHUNK_BYTES, iter_text_chunks, undecodable

#: Spectrum field <- MSP keys (upper case), highest priority first.
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("DB#", "ACCESSION", "SPECTRUMID", "SPECTRUM_ID", "ID"),
    "precursor_mz": ("PRECURSORMZ", "PRECURSOR_MZ", "PEPMASS"),
    "charge": ("CHARGE",),
    "ion_mode": ("ION_MODE", "IONMODE", "POLARITY"),
    "adduct": ("PRECURSOR_TYPE", "PRECURSORTYPE", "ADDUCT"),
    "name": ("NAME", "COMPOUND_NAME"),
    "smiles": ("SMILES",),
    "inchi": ("INCHI",),
    "inchikey": ("INCHIKEY", "INCHI_KEY"),
    "formula": ("FORMULA", "MOLECULAR_FORMULA"),
    "retention_time": ("RTINSECONDS", "RETENTIONTIME", "RETENTION_TIME"),
    "collision_energy": ("COLLISION_ENERGY", "COLLISIONENERGY"),
    "ms_level": ("SPECTRUM_TYPE", "MSLEVEL", "MS_LEVEL"),
}
_KEYS: dict[str, tuple[str, int]] = {key: (fname, prio) for fname, keys in ALIASES.items()
                                     for prio, key in enumerate(keys)}
_NUM_PEAKS = ("NUM PEAKS", "NUM_PEAKS", "NUMPEAKS")
_MS_LEVEL_RE = re.compile(r"^(?:MS)?(\d+)$", re.IGNORECASE)
_PEAK_START = frozenset("0123456789.-+")
_KEY_RE = re.compile(r"^[A-Za-z$][A-Za-z0-9_#/ .()$-]{0,63}$")


class _Record:
    __slots__ = ("end_line", "error", "fields", "index", "keys", "line", "meta", "mixed", "n_expected",
                 "peak_line0", "peaks")

    def __init__(self, index: int, line: int) -> None:
        self.index = index
        self.line = line
        self.end_line = 0
        self.fields: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.meta: dict[str, str] = {}
        self.peaks: list[str] = []
        self.peak_line0 = 0
        self.mixed = False
        self.n_expected: int | None = None
        self.error: str | None = None

    def header(self, key: str, value: str, line_no: int) -> None:
        if self.peaks:
            self.mixed = True
        upper = key.upper()
        if upper in _NUM_PEAKS:
            try:
                self.n_expected = int(value)
            except ValueError:
                self.fail(f"line {line_no}: cannot read Num Peaks {value!r}")
            return
        spec = _KEYS.get(upper)
        if spec is not None:
            fname, prio = spec
            current = self.keys.get(fname)
            if current is None:
                self.fields[fname] = value
                self.keys[fname] = key
                return
            current_prio = _KEYS[current.upper()][1]
            if prio < current_prio:
                self.meta[current] = self.fields[fname]
                self.fields[fname] = value
                self.keys[fname] = key
                return
            if prio == current_prio:  # the same key again: keep the first in the field
                key = current
        if key in self.meta:
            self.meta[key] += "; " + value
        else:
            self.meta[key] = value

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def label(self) -> str:
        title = self.fields.get("title") or self.fields.get("name")
        where = f"index {self.index}, line {self.line}"
        return f"{title!r} ({where})" if title else where

    def where_peak(self, offset: int) -> str:
        if not self.mixed:
            return f"line {self.peak_line0 + offset}"
        return f"lines {self.line}-{self.end_line or '?'}"


def read_msp(path: str | Path, *, dataset: str | None = None,
             chunk_bytes: int = CHUNK_BYTES) -> Iterator[ReadItem]:
    """Stream the MS2 records of an MSP file (see the module docstring for the rules).

    ``chunk_bytes`` is the size of the reads (memory use is a few times that).
    """
    if dataset is not None:
        check_dataset(dataset)
    path_str = str(path)
    rec: _Record | None = None
    n_records = 0
    line_no = 0
    for chunk in iter_text_chunks(path, chunk_bytes=chunk_bytes):
        done: list[_Record | InvalidRecordError] = []
        dirty = chunk.dirty
        line_no = chunk.first_line - 1
        for line in chunk.lines():
            line_no += 1
            if dirty and not line.isascii():
                problem = undecodable(line)
                if problem is not None:
                    if rec is None:
                        rec = _Record(n_records, line_no)
                        n_records += 1
                    rec.fail(f"line {line_no}: {problem}")
                    continue
            if rec is not None and (rec.peaks or rec.n_expected is not None):
                # in the peak list
                if line[:1] in _PEAK_START:
                    if not rec.peaks:
                        rec.peak_line0 = line_no
                    rec.peaks.append(line)
                    continue
                if not line.strip():
                    rec.end_line = line_no - 1
                    done.append(rec)
                    rec = None
                    continue
            elif not line.strip():
                continue
            stripped = line.strip()
            key, sep, value = stripped.partition(":")
            key = key.strip()
            if not sep or stripped[:1] in _PEAK_START or not _KEY_RE.match(key):
                if rec is not None and stripped[:1] in _PEAK_START:
                    if not rec.peaks:
                        rec.peak_line0 = line_no
                    rec.peaks.append(line)
                    continue
                if rec is None and n_records == 0:
                    raise FileFormatError(f"line {line_no} is not 'Key: value' ({stripped[:40]!r}); "
                                          f"not an MSP file?", path=path_str, reason="file_error")
                if rec is None:
                    rec = _Record(n_records, line_no)
                    n_records += 1
                rec.fail(f"line {line_no}: neither 'Key: value' nor a peak ({stripped[:40]!r})")
                continue
            if rec is not None and key.upper() == "NAME" and ("name" in rec.fields or rec.peaks):
                rec.end_line = line_no - 1
                done.append(rec)
                rec = None
            if rec is None:
                rec = _Record(n_records, line_no)
                n_records += 1
            rec.header(key, value.strip(), line_no)
        yield from _finish(done, path_str, dataset)
    if rec is not None:
        rec.end_line = line_no
        yield from _finish([rec], path_str, dataset)
    if n_records == 0:
        raise FileFormatError("no records found; not an MSP file?", path=path_str, reason="file_error")


def _finish(done: list[_Record | InvalidRecordError], path: str, dataset: str | None) -> Iterator[ReadItem]:
    """Parse the peaks of finished records in one batch where possible, then build the spectra."""
    good = [r for r in done if isinstance(r, _Record) and r.error is None]
    fast = None
    if good:
        lines = list(chain.from_iterable(r.peaks for r in good))
        fast = parse_peak_text("\n".join(lines) + "\n" if lines else "", [len(r.peaks) for r in good])
    batch = iter(fast) if fast is not None else None
    for rec in done:
        if isinstance(rec, InvalidRecordError):
            yield rec
            continue
        if rec.error is not None:
            yield InvalidRecordError(rec.error, path=path, record=rec.label(), reason="parse_error")
            continue
        if batch is not None:
            mz, intensity = next(batch)
        else:
            try:
                mz, intensity = parse_peak_lines(rec.peaks, pairs_per_line=True)
            except PeakLineError as exc:
                yield InvalidRecordError(f"{rec.where_peak(exc.offset)}: {exc}", path=path, record=rec.label(),
                                         reason="parse_error")
                continue
        item = _spectrum(rec, mz, intensity, path, dataset)
        if item is not None:
            yield item


def _spectrum(rec: _Record, mz: object, intensity: object, path: str,
              dataset: str | None) -> Spectrum | InvalidRecordError | None:
    f = rec.fields
    meta = rec.meta

    def bad(message: str) -> InvalidRecordError:
        return InvalidRecordError(message, path=path, record=rec.label(), reason="parse_error")

    n_peaks = len(mz)  # type: ignore[arg-type]
    if rec.n_expected is not None and rec.n_expected != n_peaks:
        return bad(f"Num Peaks says {rec.n_expected} but {n_peaks} peaks were read (truncated record?)")
    ms_level = 2
    text = f.get("ms_level")
    if text:
        m = _MS_LEVEL_RE.match(text)
        if m is None:
            meta[rec.keys["ms_level"]] = text
        else:
            ms_level = int(m.group(1))
            if ms_level != 2:
                return None
            if rec.keys["ms_level"].upper() == "SPECTRUM_TYPE":
                meta[rec.keys["ms_level"]] = text
    precursor_mz = None
    text = f.get("precursor_mz")
    if text:
        try:
            precursor_mz = float(text.split()[0])
        except ValueError:
            return bad(f"cannot read precursor m/z {text!r}")
    try:
        charge = header_charge(f.get("charge"), rec.keys.get("charge", ""), meta)
    except ValueError as exc:
        return bad(str(exc))
    text = f.get("ion_mode")
    ion_mode = parse_ion_mode(text) if text else None
    retention_time = header_retention_time(f.get("retention_time"), rec.keys.get("retention_time", ""), meta,
                                           minutes=rec.keys.get("retention_time", "").upper() != "RTINSECONDS")
    title = f.get("title") or None
    if dataset is not None and title is not None:
        meta[rec.keys["title"]] = title
    return Spectrum(
        spectrum_id=spectrum_identifier(path, dataset=dataset, title=title, index=rec.index),
        mz=mz,  # type: ignore[arg-type]
        intensity=intensity,  # type: ignore[arg-type]
        precursor_mz=precursor_mz,
        charge=charge,
        ion_mode=ion_mode,  # type: ignore[arg-type]  # unknown text is kept for validation
        source_file=path,
        ms_level=ms_level,
        retention_time=retention_time,
        collision_energy=f.get("collision_energy") or None,
        adduct=optional_text(f.get("adduct")),
        name=f.get("name") or None,
        smiles=optional_text(f.get("smiles")),
        inchi=optional_text(f.get("inchi")),
        inchikey=optional_text(f.get("inchikey")),
        formula=optional_text(f.get("formula")),
        metadata=meta,
    )
