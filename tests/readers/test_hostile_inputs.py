"""Hostile inputs: generated MGF records are kept or refused with a reason, never an exception; huge lines
and decompression bombs are refused quickly with bounded memory."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.errors import InvalidInputError
from engine.core.schema import spectra_to_batch
from engine.core.validate import REASONS
from engine.io.readers.files import MAX_INFLATION_RATIO
from engine.io.readers.textio import MAX_LINE_BYTES
from engine.io.stream import ReadReport, read_indexed_spectra

_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["1e30", "-1e30", "nan", "inf", "-inf", "1e308", "-0", "0", "", " ", "abc", "1,5", "2+",
                     "3-", "+-1", "1e-320", "99999999999999999999999999", "240.1594 1.2E5"]),
)
_HEADERS = ("PEPMASS", "CHARGE", "RTINSECONDS", "RTINMINUTES", "COLLISION_ENERGY", "SCANS", "IONMODE",
            "MSLEVEL", "ADDUCT")
_PEAK = st.tuples(_NUMBERS, _NUMBERS).map(lambda p: f"{p[0]} {p[1]}")


@st.composite
def mgf_record(draw: st.DrawFn) -> str:
    headers = draw(st.dictionaries(st.sampled_from(_HEADERS), _NUMBERS | st.sampled_from(["positive", "[M+H]+"]),
                                   max_size=len(_HEADERS)))
    peaks = draw(st.lists(_PEAK, max_size=6) | st.lists(st.floats(0.1, 2000).map(lambda x: f"{x} 10"),
                                                          max_size=6))
    lines = ["BEGIN IONS", f"TITLE=t{draw(st.integers(0, 10**6))}",
             *[f"{k}={v}" for k, v in headers.items()], *peaks, "END IONS"]
    return "\n".join(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(mgf_record(), min_size=1, max_size=5))
def test_generated_records_are_kept_or_refused_with_a_reason(records: list[str], tmp_path: Path) -> None:
    path = tmp_path / "generated.mgf"
    path.write_text("\n\n".join(records) + "\n")
    report = ReadReport()
    kept = [s for _, s in read_indexed_spectra(path, on_invalid="skip", report=report)]
    ms1 = sum("MSLEVEL=" in r and not _is_ms2(r) for r in records)
    assert report.kept == len(kept)
    assert report.spectra_read + ms1 >= len(records) or report.files_failed
    assert report.kept + report.n_skipped == report.spectra_read
    assert set(report.skipped) <= set(REASONS)
    for reject in report.rejects:
        assert reject["file"] == str(path) and reject["message"]
    assert spectra_to_batch(kept).num_rows == len(kept)
    try:  # strict mode: the same records end in a typed error naming the file, or pass whole
        strict = [s for _, s in read_indexed_spectra(path, on_invalid="error")]
    except InvalidInputError as exc:
        assert exc.path == str(path) and exc.reason in REASONS
    else:
        assert len(strict) == len(kept) and not report.n_skipped


def _is_ms2(record: str) -> bool:
    from engine.io.readers.fields import parse_int

    for line in record.splitlines():
        if line.startswith("MSLEVEL="):
            try:
                return (parse_int(line[8:]) or 2) == 2
            except ValueError:
                return True
    return True


def _gzip_members(path: Path, head: bytes, block: bytes, copies: int) -> None:
    """A .gz of ``head`` then ``copies`` times ``block`` (one compressed member repeated: fast to write)."""
    member = gzip.compress(block, compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head))
        for _ in range(copies):
            fh.write(member)


def _read_measured(path: Path, *, trace: bool = True) -> tuple[ReadReport, float, int]:
    """Read in skip mode: the report, the seconds and (when ``trace``: it slows Python down) peak memory."""
    report = ReadReport()
    if not trace:
        start = time.perf_counter()
        list(read_indexed_spectra(path, on_invalid="skip", report=report))
        return report, time.perf_counter() - start, 0
    tracemalloc.start()
    start = time.perf_counter()
    try:
        list(read_indexed_spectra(path, on_invalid="skip", report=report))
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return report, seconds, peak


def test_a_gigabyte_single_line_gz_is_refused_in_seconds_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "one_line.mgf.gz"
    _gzip_members(path, b"BEGIN IONS\nTITLE=x\n", b"A" * (1 << 20), 1024)  # 1 GiB inflated, no line end
    report, seconds, peak = _read_measured(path)
    assert report.files_failed == 1 and report.rejects[0]["reason"] == "file_error"
    message = str(report.rejects[0]["message"])
    assert "line 3 is longer than" in message or f"over {MAX_INFLATION_RATIO} times" in message
    assert seconds < 5 and peak < 4 * MAX_LINE_BYTES


@pytest.mark.parametrize("suffix", [".mgf", ".msp"])
def test_a_line_beyond_the_limit_is_a_file_error_naming_the_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"long_line{suffix}"
    head = "BEGIN IONS\nTITLE=x\n" if suffix == ".mgf" else "Name: x\n"
    path.write_text(head + "1" * (MAX_LINE_BYTES + 10) + "\n")
    report, _, peak = _read_measured(path)
    assert report.files_failed == 1
    line = head.count("\n") + 1
    assert f"line {line} is longer than {MAX_LINE_BYTES:,} bytes" in str(report.rejects[0]["message"])
    assert peak < 4 * MAX_LINE_BYTES


@pytest.mark.parametrize("name, head, block", [
    ("blank_lines.mgf.gz", b"", b"\n" * (1 << 20)),
    ("blank_lines.msp.gz", b"", b"\n" * (1 << 20)),
    ("spaces.mzML.gz", b"<?xml version='1.0'?><mzML><run>", b" " * (1 << 20)),
])
def test_a_decompression_bomb_is_refused(tmp_path: Path, name: str, head: bytes, block: bytes) -> None:
    path = tmp_path / name
    _gzip_members(path, head, block, 1024)
    report, seconds, _ = _read_measured(path, trace=False)
    assert report.files_failed == 1, report.rejects
    assert f"over {MAX_INFLATION_RATIO} times" in str(report.rejects[0]["message"])
    assert seconds < 5


def test_an_ordinary_gz_is_read(tmp_path: Path) -> None:
    good = Path(__file__).resolve().parents[1] / "data" / "bad" / "charge_zero.mgf"
    path = tmp_path / "good.mgf.gz"
    path.write_bytes(gzip.compress(good.read_bytes() * 400))
    report = ReadReport()
    assert len(list(read_indexed_spectra(path, on_invalid="skip", report=report))) == 800
    assert report.skipped == {"invalid_charge": 400}


def test_infinite_mz_peaks_are_refused_not_crashing(tmp_path: Path) -> None:
    """Found by the generated-records test: two ``inf`` m/z peaks (inf - inf in the step check)."""
    path = tmp_path / "inf.mgf"
    path.write_text("BEGIN IONS\nTITLE=t0\ninf 0.0\ninf 0.0\nEND IONS\n")
    report = ReadReport()
    assert list(read_indexed_spectra(path, on_invalid="skip", report=report)) == []
    assert report.n_skipped == 1 and report.rejects[0]["file"] == str(path)
