"""The bad-input corpus of tests/data/bad (see its README): each file gives the documented outcome."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from reader_helpers import BAD

from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.schema import spectra_to_batch
from engine.core.validate import REASONS, validate_spectrum
from engine.io.readers import read_file
from engine.io.stream import ReadReport, read_valid_spectra

# file -> (good spectra kept, reasons of the bad records: from the reader or from validation)
EXPECTED: dict[str, tuple[int, dict[str, int]]] = {
    "no_end_ions.mgf": (2, {"parse_error": 2}),
    "non_numeric_peaks.mgf": (2, {"parse_error": 1}),
    "nan_inf_negative.mgf": (2, {"non_finite_values": 2, "negative_values": 1}),
    "unsorted_duplicate.mgf": (3, {"duplicate_mz": 1}),
    "empty_spectrum.mgf": (2, {"empty_spectrum": 1}),
    "missing_precursor.mgf": (2, {"missing_precursor": 1}),
    "charge_zero.mgf": (2, {"invalid_charge": 1}),
    "unknown_ion_mode.mgf": (2, {"unknown_ion_mode": 1}),
    "non_utf8.mgf": (2, {"parse_error": 1}),
    "empty.mgf": (0, {"file_error": 1}),
    "compressed.mgf": (0, {"file_error": 1}),
    "truncated.mzML": (5, {"file_error": 1}),
    "garbage.mzML": (0, {"file_error": 1}),
    "hostile_precursor.mgf": (2, {"invalid_precursor": 3}),
    "hostile_charge.mgf": (2, {"invalid_charge": 3}),
    "hostile_headers.mgf": (2, {"invalid_retention_time": 3, "invalid_collision_energy": 1, "invalid_scan": 1}),
    "hostile_peaks.mgf": (2, {"mz_out_of_range": 1, "non_finite_values": 1}),
}


def skip_mode(path: Path) -> tuple[int, Counter[str], list[str]]:
    """Read like ``--on-invalid skip``: keep good spectra, count the rest by reason, keep the messages."""
    kept = 0
    reasons: Counter[str] = Counter()
    messages: list[str] = []
    try:
        for item in read_file(path):
            if isinstance(item, InvalidRecordError):
                reasons[item.reason] += 1
                messages.append(str(item))
                continue
            try:
                validate_spectrum(item, path=str(path), record=item.spectrum_id)
            except InvalidRecordError as exc:
                reasons[exc.reason] += 1
                messages.append(str(exc))
            else:
                kept += 1
    except FileFormatError as exc:
        reasons[exc.reason] += 1
        messages.append(str(exc))
    return kept, reasons, messages


def test_every_bad_file_is_listed() -> None:
    on_disk = {p.name for p in BAD.iterdir() if p.is_file() and p.name != "README.md"}
    assert on_disk == set(EXPECTED)
    readme = (BAD / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_outcome(name: str) -> None:
    kept, reasons, messages = skip_mode(BAD / name)
    assert (kept, dict(reasons)) == EXPECTED[name]
    for message in messages:  # every message names the file
        assert str(BAD / name) in message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_through_the_stream_and_into_a_batch(name: str) -> None:
    """What every command reads through (vectorised validation): the same outcome, and the kept spectra
    convert to a record batch (no value reaches an integer cast unchecked)."""
    report = ReadReport()
    kept = list(read_valid_spectra(BAD / name, on_invalid="skip", report=report))
    assert (len(kept), dict(report.skipped)) == EXPECTED[name]
    assert spectra_to_batch(kept).num_rows == len(kept)
    for reject in report.rejects:
        assert reject["file"] == str(BAD / name) and reject["reason"] in REASONS


@pytest.mark.parametrize("name", ["hostile_precursor.mgf", "hostile_charge.mgf", "hostile_headers.mgf"])
def test_strict_mode_names_file_and_record_of_an_out_of_range_value(name: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        list(read_valid_spectra(BAD / name, on_invalid="error"))
    assert info.value.path == str(BAD / name) and info.value.record and "record 2" in info.value.record


def test_strict_mode_stops_at_the_first_bad_record() -> None:
    """What the CLI's strict mode relies on: the first problem comes as an error naming file and record."""
    items = list(read_file(BAD / "non_numeric_peaks.mgf"))
    first_bad = next(i for i in items if isinstance(i, InvalidRecordError))
    assert first_bad.path == str(BAD / "non_numeric_peaks.mgf")
    assert first_bad.record is not None and "non_numeric_peak" in first_bad.record
    assert "line 52" in first_bad.detail  # the exact line of "123.4567 abc"


def test_mixed_directory() -> None:
    kept = 0
    reasons: Counter[str] = Counter()
    for path in sorted((BAD / "mixed").iterdir()):
        try:
            n, r, _ = skip_mode(path)
        except FileFormatError as exc:  # unsupported suffix: read_file refuses before reading
            n, r = 0, Counter({exc.reason: 1})
        kept += n
        reasons += r
    assert kept == 13
    assert dict(reasons) == {"parse_error": 1, "file_error": 3}
