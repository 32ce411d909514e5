"""Nothing a user feeds a job, or does to it, crashes it, mixes it or loses it (issue 20): bad files fail
alone, exit codes tell a script what happened, one writer per output, full disks and read-only outputs
end in one line and a rerun completes exactly, a finished job reruns in no time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from job_helpers import assert_same_results

from engine.commands.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
GOOD = str(DATA / "raw" / "matchms_testdata.mzML")  # 10 MS2 spectra
BAD = DATA / "bad"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("lib") / "library"
    result = CliRunner().invoke(main, ["library", "build", str(DATA / "massbank" / "massbank.mgf"), "--out", str(lib),
                                       "--fixed-embedder", "--quiet"])
    assert result.exit_code == 0, result.output
    return lib


def annotate(library: Path, out: Path, *inputs: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``engine annotate`` as a user runs it (its own process: real exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "engine", "annotate", *inputs, "--out", str(out), "--library",
                           str(library), "--quiet", *extra], capture_output=True, text=True, check=False, timeout=300)


def results(out: Path) -> list[dict[str, object]]:
    table = pads.dataset(out / "results", format="parquet", partitioning="hive").to_table()
    return sorted(table.drop(["file"]).to_pylist(), key=lambda r: str(r["query_id"]))


@pytest.fixture(scope="module")
def reference(library: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    out = tmp_path_factory.mktemp("ref") / "out"
    done = annotate(library, out, GOOD)
    assert done.returncode == 0, done.stderr
    return results(out)


def test_a_bad_file_fails_alone_and_is_recorded(library: Path, tmp_path: Path) -> None:
    """``engine annotate bad.mgf good.mzML``: the good file is annotated, the bad one recorded (strict mode
    fails the whole bad file; skip mode keeps its good records)."""
    bad = str(BAD / "hostile_charge.mgf")
    strict = annotate(library, tmp_path / "strict", bad, GOOD, extra=("--on-invalid", "error"))
    assert strict.returncode == 0, strict.stderr
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    assert summary["files_failed"] == 1 and summary["annotated"] == 10
    assert summary["failed_files"][0]["file"] == bad and "charge 9999" in summary["failed_files"][0]["message"]
    skipped = pq.read_table(tmp_path / "strict" / "skipped.parquet").to_pylist()
    assert [r["file"] for r in skipped] == [bad]
    skip = annotate(library, tmp_path / "skip", bad, GOOD)
    assert skip.returncode == 0, skip.stderr
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["annotated"] == 12 and summary["skipped_by_reason"] == {"invalid_charge": 3}
    reasons = {r["reason"] for r in pq.read_table(tmp_path / "skip" / "skipped.parquet").to_pylist()}
    assert reasons == {"invalid_charge"}


@pytest.mark.parametrize("name", ["hostile_precursor.mgf", "hostile_headers.mgf", "hostile_peaks.mgf"])
def test_hostile_values_are_skipped_not_crashed_on(library: Path, tmp_path: Path, name: str) -> None:
    done = annotate(library, tmp_path / "out", str(BAD / name))
    assert done.returncode == 0, done.stderr
    assert len(results(tmp_path / "out")) == 2


def test_nothing_annotated_is_a_failure_saying_why(library: Path, tmp_path: Path) -> None:
    failed = annotate(library, tmp_path / "all_failed", str(BAD / "empty.mgf"), str(BAD / "garbage.mzML"),
                      extra=("--on-invalid", "error"))
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines()[-1].startswith("Error: nothing annotated: all 2 input file(s) failed")
    assert json.loads((tmp_path / "all_failed" / "summary.json").read_text())["files_failed"] == 2
    skip_mode = annotate(library, tmp_path / "all_failed_skip", str(BAD / "empty.mgf"), str(BAD / "garbage.mzML"))
    assert skip_mode.returncode != 0 and "empty file" in skip_mode.stderr.strip().splitlines()[-1]
    failed_files = json.loads((tmp_path / "all_failed_skip" / "summary.json").read_text())["failed_files"]
    assert sorted(f["file"] for f in failed_files) == sorted([str(BAD / "empty.mgf"), str(BAD / "garbage.mzML")])
    only_bad = tmp_path / "only_bad.mgf"
    only_bad.write_text("BEGIN IONS\nTITLE=x\nPEPMASS=1e30\nCHARGE=1+\n100.0 1.0\nEND IONS\n")
    invalid = annotate(library, tmp_path / "all_invalid", str(only_bad))
    assert invalid.returncode != 0
    assert "nothing annotated: no valid MS2 spectrum in 1 input file(s) (1 records skipped" in invalid.stderr
    (tmp_path / "empty_dir").mkdir()
    empty = annotate(library, tmp_path / "from_empty", str(tmp_path / "empty_dir"))
    assert empty.returncode != 0 and "no spectrum files found" in empty.stderr.strip().splitlines()[-1]


def test_a_second_writer_stops_with_a_message_naming_the_first(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from engine.core.locks import DirectoryLock\n"
                               "with DirectoryLock(sys.argv[1], command='engine annotate'):\n"
                               "    print('held', flush=True); time.sleep(60)\n", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = annotate(library, out, GOOD)
        assert second.returncode != 0
        assert f"is in use by engine annotate (pid {holder.pid}" in second.stderr
        assert not (out / "results").exists()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    after = annotate(library, out, GOOD)  # the holder was killed: its lock is taken over
    assert after.returncode == 0, after.stderr


def test_parts_are_not_written_once_another_job_took_the_directory(tmp_path: Path) -> None:
    import pyarrow as pa

    from engine.jobs.chunks import InputFile
    from engine.jobs.output import JobChangedError, JobOutput

    first = JobOutput(tmp_path, {"settings": {"chunk_size": 8}}).open()
    JobOutput(tmp_path, {"settings": {"chunk_size": 16}}).open()  # a second job with another setting
    with pytest.raises(JobChangedError, match="another job took"):
        first.write_part(InputFile(Path("a.mgf"), "0" * 64), 0, pa.table({"x": [1]}))
    assert not list(tmp_path.glob("results/*/*.parquet"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (skipped where mounting is not permitted)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave_kib: int) -> Path:
    """Fill ``disk`` but ``leave_kib`` KiB."""
    st = os.statvfs(disk)
    free_kib = st.f_bavail * st.f_frsize // 1024
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free_kib - leave_kib, 0) * 1024)
    return filler


def test_a_full_disk_is_one_line_and_the_rerun_completes_exactly(library: Path, small_disk: Path,
                                                                  tmp_path: Path) -> None:
    reference = annotate(library, tmp_path / "reference", GOOD, extra=("--chunk-size", "4"))
    assert reference.returncode == 0, reference.stderr
    out = small_disk / "out"
    filler = _fill(small_disk, 24)
    full = annotate(library, out, GOOD, extra=("--chunk-size", "4"))
    assert full.returncode != 0
    last = full.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and str(small_disk) in last and "Traceback" not in full.stderr
    filler.unlink()
    again = annotate(library, out, GOOD, extra=("--chunk-size", "4"))
    assert again.returncode == 0, again.stderr
    assert_same_results(results(out), results(tmp_path / "reference"))
    assert not list(out.rglob(".*.tmp-*"))


def test_a_full_disk_during_ingest_is_one_line_and_the_rerun_adds_each_row_once(
        small_disk: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.mgf"
    text = (DATA / "massbank" / "massbank.mgf").read_text()
    big.write_text("".join(text.replace("TITLE=", f"TITLE=c{i}_") for i in range(100)))
    store = small_disk / "store"
    filler = _fill(small_disk, 200)
    full = CliRunner().invoke(main, ["ingest", str(big), "--out", str(store), "--quiet"])
    assert full.exit_code != 0 and "No space left on device" in full.output and str(store) in full.output
    filler.unlink()
    again = CliRunner().invoke(main, ["ingest", str(big), "--out", str(store), "--quiet"])
    assert again.exit_code == 0, again.output
    assert "spectra: 4000 rows" in again.output


def test_a_read_only_output_is_one_line(library: Path, tmp_path: Path) -> None:
    where = tmp_path / "ro"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        done = annotate(library, where / "out", GOOD)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert "Read-only file system" in done.stderr and str(where / "out") in done.stderr
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_concurrent_ingests_of_one_file_leave_each_row_once(tmp_path: Path) -> None:
    import lancedb

    store = tmp_path / "store"
    source = str(DATA / "massbank" / "massbank.mgf")
    procs = [subprocess.Popen([sys.executable, "-m", "engine", "ingest", source, "--out", str(store), "--quiet",
                               "--lock-wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    db = lancedb.connect(str(store))
    spectra = db.open_table("spectra").to_arrow()
    assert spectra.num_rows == 40 == len(set(spectra.column("spectrum_id").to_pylist()))
    assert db.open_table("ingested_files").count_rows() == 1
    assert sum("1 unchanged" in out for out, _ in outputs) == 1


def test_a_finished_job_reruns_without_opening_model_or_library(library: Path, tmp_path: Path) -> None:
    from engine.jobs.annotate import annotate as run
    from engine.jobs.annotator import AnnotatorSpec

    out = tmp_path / "out"
    spec = AnnotatorSpec(library=str(library))
    first = run([GOOD], out, spec=spec, progress=False)
    assert first.annotated == 10 and "start" in first.seconds
    start = time.perf_counter()
    again = run([GOOD], out, spec=spec, progress=False)
    assert time.perf_counter() - start < 1.0
    assert again.annotated == 10 and again.files_done_before == 1 and "start" not in again.seconds
    (library / "extra.txt").write_text("changed")  # another library: the rerun does the work again
    try:
        changed = run([GOOD], out, spec=spec, progress=False)
    finally:
        (library / "extra.txt").unlink()
    assert "start" in changed.seconds and changed.invalidated


def test_ingest_of_only_failing_files_exits_non_zero_and_good_ones_go_on(tmp_path: Path) -> None:
    bad = [str(BAD / "empty.mgf"), str(BAD / "garbage.mzML")]
    failed = CliRunner().invoke(main, ["ingest", *bad, "--out", str(tmp_path / "a"), "--on-invalid", "skip",
                                       "--quiet"])
    assert failed.exit_code != 0 and "nothing ingested: all 2 new input file(s) failed" in failed.output
    mixed = CliRunner().invoke(main, ["ingest", *bad, GOOD, "--out", str(tmp_path / "b"), "--on-invalid", "skip",
                                      "--quiet"])
    assert mixed.exit_code == 0, mixed.output
    assert "spectra: 10 rows" in mixed.output
