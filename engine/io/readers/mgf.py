"""Streaming MGF reader for the GNPS, matchms, MassSpecGym, MZmine and SIRIUS dialects.

Keys are case-insensitive (and surrounding spaces are ignored when matching them). Each field of
:class:`~engine.core.records.Spectrum` is read from the first of its aliases present in a record
(:data:`ALIASES`, highest priority first), its value stripped of surrounding spaces; the other aliases
and every unknown key go to ``Spectrum.metadata`` with key and value exactly as written, so that
writing the spectrum back with :func:`engine.io.writers.mgf.write_mgf` loses nothing. Specifics:

- ``PEPMASS`` may carry an intensity (``PEPMASS=301.1 1.2E5``); it is kept as metadata
  ``precursor_intensity``.
- ``CHARGE`` reads ``1``, ``1+``, ``+1``, ``2-``, ``-2``; a list of candidates (``2+ and 3+``) gives
  no charge and is kept in metadata.
- ``IONMODE``/``POLARITY`` are normalised to ``positive``/``negative``; other text is kept as is for
  validation to reject (``unknown_ion_mode``).
- Retention time: ``RTINSECONDS``, ``RETENTIONTIME`` (seconds) or ``RTINMINUTES``; a value that is not
  a number stays in metadata.
- Records whose ``MSLEVEL`` is not 2 (SIRIUS writes MS1 records) are skipped silently.
- The identifier is ``TITLE`` (else ``SPECTRUMID``/``IDENTIFIER``), else ``<file>:scan=<SCANS>``, else
  ``<file>:feature_id=<FEATURE_ID>``, else ``<file>:index=<n>`` (0-based record index); with a
  ``dataset`` a USI, and the title is kept in metadata as ``TITLE``.
- ``KEY=value`` lines before the first ``BEGIN IONS`` are global defaults for every record.
- Peak lines are ``mz intensity`` separated by spaces or a tab; a third column is ignored.
- ``N/A``, ``NA``, ``None``, ``null`` in ``SMILES``/``INCHI``/``INCHIKEY``/``FORMULA``/``ADDUCT``
  (GNPS writes ``INCHI=N/A``) mean no value.

Bytes that are not UTF-8 make the record that holds them an ``InvalidRecordError`` naming the line and
byte (there is no silent latin-1 fallback: a wrong guess would corrupt names and structures).
A record without ``END IONS`` (before the next ``BEGIN IONS`` or the end of the file) is a
``parse_error``. A file with no ``BEGIN IONS`` at all, or that is empty or binary, raises
:class:`~engine.core.errors.FileFormatError`.

Speed: the file is read in 4 MiB chunks that end after an ``END IONS`` line. A chunk of plain records
(``BEGIN IONS``, ``KEY=value`` lines, peak lines, ``END IONS``) is cut into records with string
searches; each header block is matched by one regular expression built for its sequence of keys (files
repeat the same keys in the same order; a new sequence is split line by line once), and the peak lines
of all its records are converted by one call of Arrow's CSV parser (:mod:`engine.io.readers.peaks`). Any
chunk that is not plain (non-UTF-8 bytes, missing ``END IONS``, comments, lower-case ``begin ions``,
text between records, global parameters, peaks the batch parser refuses) goes through a careful
line-by-line parser that names the bad line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from operator import itemgetter, methodcaller
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.io.readers.fields import NULL_TOKENS, header_charge, header_retention_time, parse_int, parse_ion_mode
from engine.io.readers.files import ReadItem
from engine.io.readers.identifiers import check_dataset, spectrum_identifier
from engine.io.readers.peaks import PeakLineError, parse_peak_lines, parse_peak_text
from engine.io.readers.textio import CHUNK_BYTES, TextChunk, iter_text_chunks, undecodable

#: Spectrum field <- MGF keys (upper case), highest priority first.
ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("TITLE", "SPECTRUMID", "SPECTRUM_ID", "IDENTIFIER"),
    "precursor_mz": ("PEPMASS", "PRECURSOR_MZ", "PRECURSORMZ"),
    "charge": ("CHARGE",),
    "ion_mode": ("IONMODE", "ION_MODE", "POLARITY"),
    "adduct": ("ADDUCT", "PRECURSOR_TYPE", "PRECURSORTYPE", "ION"),
    "name": ("NAME", "COMPOUND_NAME", "COMPOUNDNAME"),
    "smiles": ("SMILES",),
    "inchi": ("INCHI",),
    "inchikey": ("INCHIKEY", "INCHI_KEY"),
    "formula": ("FORMULA", "MOLECULAR_FORMULA"),
    "scan": ("SCANS", "SCAN_NUMBER"),
    "native_id": ("NATIVE_ID", "NATIVEID"),
    "retention_time": ("RTINSECONDS", "RETENTIONTIME", "RETENTION_TIME", "RTINMINUTES"),
    "ms_level": ("MSLEVEL", "MS_LEVEL"),
    "collision_energy": ("COLLISION_ENERGY", "COLLISIONENERGY"),
}
#: Upper-case key -> (field, priority).
_KEYS: dict[str, tuple[str, int]] = {key: (fname, prio) for fname, keys in ALIASES.items()
                                     for prio, key in enumerate(keys)}
PRECURSOR_INTENSITY_KEY = "precursor_intensity"
_COMMENT = ("#", ";", "!", "/")
_SPLIT_EQ: Callable[[str], list[str]] = methodcaller("split", "=", 1)
_MAX_LAYOUTS = 4096
_TEXT_FIELDS = ("adduct", "smiles", "inchi", "inchikey", "formula")  # where N/A means no value


def _getter(indices: list[int]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """``itemgetter`` that always returns a tuple."""
    if not indices:
        return lambda values: ()
    if len(indices) == 1:
        only = indices[0]
        return lambda values: (values[only],)
    return itemgetter(*indices)


class _Layout:
    """How to read records whose header keys are ``keys`` (as written, in this order, no repeats).

    Built once per layout: which key fills which field (the highest-priority alias; the others stay in
    metadata), and a regular expression matching the whole header block, whose groups are the values.
    Matching it is about twice as fast as splitting the lines, and the keys are not created again.
    """

    __slots__ = ("feature_index", "field_keys", "field_names", "fields_of", "meta_keys", "meta_of", "regex")

    def __init__(self, keys: tuple[str, ...]) -> None:
        chosen: dict[str, tuple[int, int]] = {}  # field -> (priority, index)
        self.feature_index: int | None = None
        for i, key in enumerate(keys):
            upper = key.strip().upper()
            if upper == "FEATURE_ID":
                self.feature_index = i
            spec = _KEYS.get(upper)
            if spec is not None and (spec[0] not in chosen or spec[1] <= chosen[spec[0]][0]):
                chosen[spec[0]] = (spec[1], i)
        field_index = {i: fname for fname, (_, i) in chosen.items()}
        self.field_names = tuple(field_index.values())
        self.fields_of = _getter(list(field_index))
        self.field_keys = {fname: keys[i] for i, fname in field_index.items()}
        meta_index = [i for i in range(len(keys)) if i not in field_index]
        self.meta_keys = tuple(keys[i] for i in meta_index)
        self.meta_of = _getter(meta_index)
        self.regex = re.compile("".join(re.escape(key) + "=(.*)\n" for key in keys))

    def split(self, values: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str], str | None]:
        """``(fields (stripped), metadata (as written), FEATURE_ID)`` from the values in key order."""
        fields = dict(zip(self.field_names, map(str.strip, self.fields_of(values)), strict=True))
        meta = dict(zip(self.meta_keys, self.meta_of(values), strict=True))
        feature_id = values[self.feature_index] if self.feature_index is not None else None
        return fields, meta, feature_id


class _HeaderError(ValueError):
    """A header value that cannot be read (a bad PEPMASS, CHARGE or MSLEVEL)."""


def _spectrum(f: dict[str, str], keys: dict[str, str], meta: dict[str, str], feature_id: str | None,
              index: int, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.float32], path: str,
              dataset: str | None) -> Spectrum | None:
    """Build the spectrum of one record from its field values; None when it is not MS2.

    ``f`` maps field names to values as written, ``keys`` field names to the key that gave them.
    Raises :class:`_HeaderError` for a value that cannot be read.
    """
    ms_level = 2
    text = f.get("ms_level")
    if text:
        try:
            ms_level = parse_int(text) or 2
        except ValueError:
            raise _HeaderError(f"cannot read MS level {text!r}") from None
        if ms_level != 2:
            return None
    precursor_mz = None
    text = f.get("precursor_mz")
    if text:
        try:
            precursor_mz = float(text)
        except ValueError:
            parts = text.split()
            try:
                precursor_mz = float(parts[0])
            except ValueError:
                raise _HeaderError(f"cannot read precursor m/z {text!r} ({keys['precursor_mz']})") from None
            meta[PRECURSOR_INTENSITY_KEY] = " ".join(parts[1:])
    try:
        charge = header_charge(f.get("charge"), keys.get("charge", ""), meta)
    except ValueError as exc:
        raise _HeaderError(str(exc)) from None
    text = f.get("ion_mode")
    ion_mode = parse_ion_mode(text) if text else None
    scan = None
    text = f.get("scan")
    if text:
        if text.isdigit():
            scan = int(text)
        else:
            meta[keys["scan"]] = text
    retention_time = header_retention_time(f.get("retention_time"), keys.get("retention_time", ""), meta,
                                           minutes=keys.get("retention_time", "").strip().upper() == "RTINMINUTES")
    title = f.get("title") or None
    native_id = f.get("native_id") or None
    if dataset is not None and title is not None:
        meta[keys["title"]] = title
    id_title = title
    if id_title is None and native_id is None and scan is None and feature_id:
        id_title = f"{Path(path).name}:feature_id={feature_id}"
    if id_title is not None and dataset is None:
        spectrum_id = id_title  # the common case of spectrum_identifier, without the call
    else:
        spectrum_id = spectrum_identifier(path, dataset=dataset, title=id_title, native_id=native_id, scan=scan,
                                          index=index)
    text_fields = [f.get(name) for name in _TEXT_FIELDS]
    for i, text in enumerate(text_fields):
        if text is not None and (not text or (text[0] in "nN" and text.lower() in NULL_TOKENS)):
            text_fields[i] = None
    adduct, smiles, inchi, inchikey, formula = text_fields
    return Spectrum(spectrum_id, mz, intensity, precursor_mz, charge, ion_mode, path,  # type: ignore[arg-type]
                    native_id, scan, ms_level, retention_time, f.get("collision_energy") or None,
                    adduct, f.get("name") or None, smiles, inchi, inchikey, formula, meta)


def read_mgf(path: str | Path, *, dataset: str | None = None,
             chunk_bytes: int = CHUNK_BYTES) -> Iterator[ReadItem]:
    """Stream the MS2 records of an MGF file (see the module docstring for the dialect rules).

    ``chunk_bytes`` is the size of the reads (memory use is a few times that).
    """
    if dataset is not None:
        check_dataset(dataset)
    path_str = str(path)
    careful = _CarefulParser(path_str, dataset)
    layouts: dict[tuple[str, ...], _Layout] = {}
    for chunk in iter_text_chunks(path, chunk_bytes=chunk_bytes, boundary=b"END IONS"):
        fast = None
        if careful.rec is None and not careful.globals and not chunk.dirty:
            fast = _fast_chunk(chunk.text, path_str, dataset, careful.n_records, layouts)
        if fast is not None:
            spectra, n_records = fast
            careful.n_records += n_records
            careful.seen_record = careful.seen_record or n_records > 0
            yield from spectra
        else:
            yield from careful.finish(careful.feed(chunk))
    yield from careful.finish(careful.close())


def _fast_chunk(text: str, path: str, dataset: str | None, first_index: int,
                layouts: dict[tuple[str, ...], _Layout]) -> tuple[list[Spectrum], int] | None:
    """Parse a chunk of plain records, or return None (having yielded nothing) when it is not plain.

    ``layouts`` caches a :class:`_Layout` per sequence of header keys; each record is first matched
    against the layout of the record before it (files repeat the same keys in the same order).
    Returns the spectra and the number of records seen (MS1 records included).
    """
    parts = text.split("BEGIN IONS\n")
    if parts[0].strip():
        return None
    staged: list[tuple[dict[str, str], dict[str, str], dict[str, str], str | None]] = []
    layout: _Layout | None = None
    peak_texts: list[str] = []
    counts: list[int] = []
    split_eq = _SPLIT_EQ
    for part in parts[1:]:
        body, sep, tail = part.partition("\nEND IONS")
        if not sep or tail.strip():
            return None
        cut = body.rfind("=")
        if cut == -1:
            fields: dict[str, str] = {}
            keys: dict[str, str] = {}
            meta: dict[str, str] = {}
            feature_id = None
            peak_text = body
        else:
            newline = body.find("\n", cut)
            if newline == -1:
                head, peak_text = body + "\n", ""
            else:
                head, peak_text = body[:newline + 1], body[newline + 1:]
            match = layout.regex.fullmatch(head) if layout is not None else None
            if layout is None or match is None:
                try:
                    values = dict(map(split_eq, head[:-1].split("\n")))
                except ValueError:
                    return None  # a line without "=" among the headers
                key_order = tuple(values)
                layout = layouts.get(key_order)
                if layout is None:
                    if len(layouts) > _MAX_LAYOUTS:
                        layouts.clear()
                    layout = layouts[key_order] = _Layout(key_order)
                fields, meta, feature_id = layout.split(tuple(values.values()))
            else:
                fields, meta, feature_id = layout.split(match.groups())
            keys = layout.field_keys
        staged.append((fields, keys, meta, feature_id))
        if peak_text:
            peak_texts.append(peak_text)
            counts.append(peak_text.count("\n") + 1)
        else:
            counts.append(0)
    peaks = parse_peak_text("\n".join(peak_texts) + "\n" if peak_texts else "", counts)
    if peaks is None:
        return None
    spectra: list[Spectrum] = []
    index = first_index
    try:
        for (fields, keys, meta, feature_id), (mz, intensity) in zip(staged, peaks, strict=True):
            spectrum = _spectrum(fields, keys, meta, feature_id, index, mz, intensity, path, dataset)
            index += 1
            if spectrum is not None:
                spectra.append(spectrum)
    except _HeaderError:
        return None
    return spectra, len(staged)


class _Record:
    """One record of the careful parser: headers resolved to fields, metadata and peak lines."""

    __slots__ = ("end_line", "error", "feature_id", "fields", "index", "keys", "line", "meta", "mixed", "peaks",
                 "raw")

    def __init__(self, index: int, line: int) -> None:
        self.index = index
        self.line = line
        self.end_line = 0
        self.fields: dict[str, str] = {}  # field -> value, stripped
        self.raw: dict[str, str] = {}  # field -> value as written
        self.keys: dict[str, str] = {}  # field -> key as written
        self.meta: dict[str, str] = {}
        self.peaks: list[str] = []
        self.mixed = False  # another line came after the first peak line
        self.error: str | None = None
        self.feature_id: str | None = None

    def header(self, key: str, value: str) -> None:
        """Add one ``KEY=value`` line."""
        if self.peaks:
            self.mixed = True
        upper = key.strip().upper()
        spec = _KEYS.get(upper)
        if spec is None:
            self.meta[key] = value
            if upper == "FEATURE_ID":
                self.feature_id = value
            return
        fname, prio = spec
        current = self.keys.get(fname)
        current_prio = _KEYS[current.strip().upper()][1] if current is not None else prio
        if current is None or prio <= current_prio:
            if current is not None and prio < current_prio:
                self.meta[current] = self.raw[fname]
            self.fields[fname] = value.strip()
            self.raw[fname] = value
            self.keys[fname] = key
        else:
            self.meta[key] = value

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def label(self) -> str:
        title = self.fields.get("title")
        where = f"index {self.index}, line {self.line}"
        return f"{title!r} ({where})" if title else where

    def where_peak(self, offset: int) -> str:
        """The line of the ``offset``-th peak line (a range when other lines come between peaks)."""
        if not self.mixed and self.end_line:
            return f"line {self.end_line - len(self.peaks) + offset}"
        return f"lines {self.line}-{self.end_line or '?'}"


class _CarefulParser:
    """Line-by-line MGF state machine that keeps its state across chunks and names every bad line."""

    def __init__(self, path: str, dataset: str | None) -> None:
        self.path = path
        self.dataset = dataset
        self.rec: _Record | None = None
        self.globals: list[tuple[str, str]] = []
        self.n_records = 0
        self.seen_record = False
        self.stray_line = 0  # first line of a run of text outside records, 0 when none
        self.line_no = 0

    def _begin(self, line_no: int) -> _Record:
        rec = _Record(self.n_records, line_no)
        self.n_records += 1
        self.seen_record = True
        for key, value in self.globals:
            rec.header(key, value)
        return rec

    def feed(self, chunk: TextChunk) -> list[_Record | InvalidRecordError]:
        """Read the lines of a chunk; return the records finished in it and errors outside records."""
        done: list[_Record | InvalidRecordError] = []
        dirty = chunk.dirty
        line_no = chunk.first_line - 1
        rec = self.rec
        for line in chunk.lines():
            line_no += 1
            if dirty and not line.isascii():
                problem = undecodable(line)
                if problem is not None:
                    if rec is not None:
                        rec.fail(f"line {line_no}: {problem}")
                    else:
                        done.append(InvalidRecordError(problem, path=self.path,
                                                       record=f"line {line_no}", reason="parse_error"))
                    continue
            if rec is not None:
                if "=" in line:
                    key, _, value = line.partition("=")
                    rec.header(key, value)
                    continue
                if line[:1].isdigit():
                    rec.peaks.append(line)
                    continue
                stripped = line.strip()
                if not stripped:
                    if rec.peaks:
                        rec.mixed = True
                    continue
                upper = stripped.upper()
                if upper == "END IONS":
                    rec.end_line = line_no
                    done.append(rec)
                    rec = None
                elif upper == "BEGIN IONS":
                    rec.fail(f"no END IONS before the next BEGIN IONS at line {line_no}")
                    rec.end_line = line_no - 1
                    done.append(rec)
                    rec = self._begin(line_no)
                elif stripped[0] in _COMMENT:
                    rec.mixed = True
                else:
                    rec.peaks.append(line)
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in _COMMENT:
                continue
            if stripped.upper() == "BEGIN IONS":
                if self.stray_line:
                    done.append(_stray(self.path, self.stray_line, line_no - 1))
                    self.stray_line = 0
                rec = self._begin(line_no)
            elif not self.seen_record and "=" in stripped:
                key, _, value = stripped.partition("=")
                self.globals.append((key, value))
            elif not self.seen_record:
                raise FileFormatError(f"line {line_no} is neither BEGIN IONS nor KEY=value "
                                      f"({stripped[:40]!r}); not an MGF file?", path=self.path,
                                      reason="file_error")
            elif not self.stray_line:
                self.stray_line = line_no
        self.rec = rec
        self.line_no = line_no
        return done

    def close(self) -> list[_Record | InvalidRecordError]:
        """Finish the file: an open record lacks its END IONS; a file without records is not MGF."""
        done: list[_Record | InvalidRecordError] = []
        if self.rec is not None:
            self.rec.fail(f"no END IONS before the end of the file (record starts at line {self.rec.line})")
            self.rec.end_line = self.line_no
            done.append(self.rec)
            self.rec = None
        if self.stray_line:
            done.append(_stray(self.path, self.stray_line, None))
        if not self.seen_record:
            raise FileFormatError("no BEGIN IONS found; not an MGF file?", path=self.path, reason="file_error")
        return done

    def finish(self, done: list[_Record | InvalidRecordError]) -> Iterator[ReadItem]:
        """Turn finished records into spectra or errors, in file order."""
        path = self.path
        for item in done:
            if isinstance(item, InvalidRecordError):
                yield item
                continue
            if item.error is not None:
                yield InvalidRecordError(item.error, path=path, record=item.label(), reason="parse_error")
                continue
            try:
                mz, intensity = parse_peak_lines(item.peaks)
            except PeakLineError as exc:
                yield InvalidRecordError(f"{item.where_peak(exc.offset)}: {exc}", path=path, record=item.label(),
                                         reason="parse_error")
                continue
            try:
                spectrum = _spectrum(item.fields, item.keys, item.meta, item.feature_id, item.index, mz,
                                     intensity, path, self.dataset)
            except _HeaderError as exc:
                yield InvalidRecordError(str(exc), path=path, record=item.label(), reason="parse_error")
                continue
            if spectrum is not None:
                yield spectrum


def _stray(path: str, first: int, last: int | None) -> InvalidRecordError:
    where = f"lines {first}-{last}" if last is not None and last > first else f"line {first}"
    return InvalidRecordError("text outside BEGIN IONS ... END IONS (a missing BEGIN IONS?)",
                              path=path, record=where, reason="parse_error")
