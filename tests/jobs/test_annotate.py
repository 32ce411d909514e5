"""The annotation job end to end: results, resume after SIGKILL, invalidation, failures, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from job_helpers import assert_same_results

from engine.commands.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
QUERIES = [str(DATA / "massbank" / "massbank.msp"), str(DATA / "raw" / "matchms_testdata.mzML"),
           str(DATA / "raw" / "AssayGeneratorMetabo_input.mzML")]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("lib") / "library"
    result = CliRunner().invoke(main, ["library", "build", str(DATA / "massbank" / "massbank.mgf"), "--out", str(lib),
                                       "--fixed-embedder", "--quiet"])
    assert result.exit_code == 0, result.output
    return lib


def results(out: Path) -> list[dict[str, object]]:
    table = pads.dataset(out / "results", format="parquet", partitioning="hive").to_table()
    return sorted(table.drop(["file"]).to_pylist(), key=lambda r: str(r["query_id"]))


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "annotate", *args], capture_output=True, text=True,
                          check=False, timeout=300)


@pytest.fixture(scope="module")
def reference(library: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    out = tmp_path_factory.mktemp("ref") / "out"
    result = CliRunner().invoke(main, ["annotate", *QUERIES, "--out", str(out), "--library", str(library),
                                       "--chunk-size", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, results(out)


def test_every_spectrum_is_annotated_once(reference: tuple[Path, list[dict[str, object]]]) -> None:
    out, rows = reference
    ids = [r["query_id"] for r in rows]
    assert len(ids) == len(set(ids)) > 60
    summary = (out / "summary.json").read_text()
    assert '"files": 3' in summary and f'"annotated": {len(ids)}' in summary
    # MassBank queries are in the library (same records): their identity hit is themselves.
    msp = [r for r in rows if str(r["source_file"]).endswith(".msp")]
    assert len(msp) == 40
    assert sum(r["identity_library_id"] is not None for r in msp) >= 35
    assert all(r["analogue_library_id"] is not None for r in msp)
    assert all(0.0 <= float(r["quality"]) <= 1.0 for r in rows)  # type: ignore[arg-type]


def test_embeddings_sit_beside_the_results_row_for_row(reference: tuple[Path, list[dict[str, object]]]) -> None:
    """Results parts stay narrow; each chunk's embeddings part holds the same rows in the same order, and
    ``read_part(..., embeddings=True)`` joins them back."""
    from engine.jobs.output import embeddings_part, read_part

    out, rows = reference
    parts = sorted(out.glob("results/file=*/part-*.parquet"))
    assert parts and all("embedding" not in pq.read_schema(p).names for p in parts)
    assert "embedding" not in rows[0]
    for part in parts:
        res, emb = pq.read_table(part), pq.read_table(embeddings_part(part))
        assert emb.column("query_id").equals(res.column("query_id"))
        assert emb.column("record_index").equals(res.column("record_index"))
        joined = read_part(part, embeddings=True)
        assert joined.column("embedding").equals(emb.column("embedding"))
        assert joined.drop_columns(["embedding"]).equals(res)


@pytest.mark.slow
def test_sigkill_at_any_point_then_resume_is_exact(library: Path, reference: tuple[Path, list[dict[str, object]]],
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [*QUERIES, "--out", str(out), "--library", str(library), "--chunk-size", "8", "--quiet"]
    kills = 0
    for parts_before_kill in (1, 4, 9):
        proc = subprocess.Popen([sys.executable, "-m", "engine", "annotate", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if len(list(out.glob("results/*/part-*.parquet"))) >= parts_before_kill:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
    assert kills >= 1
    final = run(args)
    assert final.returncode == 0, final.stderr
    assert_same_results(results(out), reference[1])


def test_changed_library_invalidates_results(library: Path, tmp_path: Path) -> None:
    lib2 = tmp_path / "lib2"
    shutil.copytree(library, lib2)
    out = tmp_path / "out"
    first = CliRunner().invoke(main, ["annotate", QUERIES[1], "--out", str(out), "--library", str(library), "--quiet"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, ["annotate", QUERIES[1], "--out", str(out), "--library", str(lib2), "--quiet"])
    assert second.exit_code == 0
    assert "were removed and recomputed" in second.output
    assert len(results(out)) == 10  # recomputed, not duplicated


def test_failed_file_is_recorded_and_others_go_on(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bad = DATA / "bad" / "truncated.mzML"
    result = CliRunner().invoke(main, ["annotate", QUERIES[1], str(bad), "--out", str(out), "--library", str(library),
                                       "--on-invalid", "error", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "1 failed" in result.output
    skipped = pq.read_table(out / "skipped.parquet").to_pylist()
    assert any("truncated.mzML" in str(r["file"]) for r in skipped)
    assert len(results(out)) == 10


def test_dry_run_lists_work(library: Path, reference: tuple[Path, list[dict[str, object]]]) -> None:
    out, _ = reference
    result = CliRunner().invoke(main, ["annotate", *QUERIES, "--out", str(out), "--dry-run"])
    assert result.exit_code == 0
    assert result.output.count("done ") == 3 and "0 to annotate" in result.output


@pytest.mark.slow
def test_ray_two_workers_same_results_and_survives_a_killed_worker(
        library: Path, reference: tuple[Path, list[dict[str, object]]], tmp_path: Path) -> None:
    import threading

    import ray  # a dev dependency: its absence is a failure, not a skip

    from engine.jobs.annotate import JobOptions, annotate
    from engine.jobs.annotator import AnnotateSettings, AnnotatorSpec

    out = tmp_path / "out"
    spec = AnnotatorSpec(library=str(library), settings=AnnotateSettings(chunk_size=8))
    ray.init(num_cpus=5, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}})
    killed: list[int] = []
    finished = threading.Event()   # no fixed deadline: on a loaded machine the first parts can take minutes

    def killer() -> None:
        import psutil

        while not finished.is_set() and not killed:
            if len(list(out.glob("results/*/part-*.parquet"))) >= 2:
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "SearchActor" in " ".join(proc.info["cmdline"] or []):
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed.append(proc.info["pid"])
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        # A file without any valid MS2 spectrum (one empty chunk) goes through the stages too.
        empty = tmp_path / "no_ms2.mgf"
        empty.write_text("BEGIN IONS\nTITLE=x\nPEPMASS=100.0\nCHARGE=1+\nEND IONS\n")
        summary = annotate([*QUERIES, str(empty)], out, spec=spec, options=JobOptions(), workers=2, progress=False)
        assert summary.files == 4 and summary.skipped["empty_spectrum"] == 1
    finally:
        finished.set()
        thread.join(timeout=5)
        ray.shutdown()
    assert killed, "no search actor process was found to kill"
    if summary.files_failed or len(results(out)) != len(reference[1]):
        # The kill may outlast Ray's retries; rerunning resumes without loss or duplicates.
        print("ray gave up after the kill; resuming")
        annotate(QUERIES, out, spec=spec, options=JobOptions(), progress=False)
    assert_same_results(results(out), reference[1])


def test_candidate_ranking_with_library_evidence(tmp_path: Path) -> None:
    """Bundled model, library and candidates: the evidence setting changes only the candidate columns and
    demotes only candidates whose reference spectra in the library do not match the query."""
    from engine.jobs.annotator import AnnotateSettings, Annotator, AnnotatorSpec

    bundled = Path(__file__).resolve().parents[2] / "engine" / "data" / "candidates" / "molecules.parquet"
    query = [str(DATA / "massbank" / "massbank.msp")]
    rows = {}
    for flag in ("--library-evidence", "--no-library-evidence"):
        out = tmp_path / flag.strip("-")
        result = CliRunner().invoke(main, ["annotate", *query, "--out", str(out), "--candidates", str(bundled),
                                           flag, "--quiet"])
        assert result.exit_code == 0, result.output
        rows[flag] = results(out)
    on, off = rows["--library-evidence"], rows["--no-library-evidence"]
    assert sum(r["candidate_smiles"] is not None for r in on) >= 20
    cand_cols = {"candidate_score", "candidate_smiles", "candidate_inchikey", "candidate_formula"}
    for a, b in zip(on, off, strict=True):
        assert {k: v for k, v in a.items() if k not in cand_cols} == {k: v for k, v in b.items() if k not in cand_cols}
    # where the top candidate changed, the one chosen without evidence has unmatched reference spectra
    evidence = Annotator(AnnotatorSpec(settings=AnnotateSettings())).evidence()
    changed = [(a, b) for a, b in zip(on, off, strict=True) if a["candidate_inchikey"] != b["candidate_inchikey"]]
    assert len(evidence) > 5_000 and {m for _, m in evidence.groups} == {"positive", "negative"}
    for a, b in changed:
        key = str(b["candidate_inchikey"]).split("-")[0]
        assert (key, a["ion_mode"]) in evidence.groups
    assert all(float(a["candidate_score"]) <= float(b["candidate_score"]) + 1e-6  # type: ignore[arg-type]
               for a, b in zip(on, off, strict=True) if a["candidate_score"] is not None)
    # the job's HTML report reads the output directory: the queries and library it used are the defaults
    out = tmp_path / "library-evidence"
    page_path = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(out), "--out", str(page_path), "--max-plots", "5"])
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    matched = sum(r["identity_library_id"] is not None for r in on)
    assert "Annotation report" in page and f"{len(on)} spectra annotated" in page
    assert page.count("alt='mirror plot") == min(matched, 5) and page.count("alt='fragment plot") == 5
    assert "not plotted" not in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["identity_hits"] == matched
    assert summary["identity_hits_probable"] == sum(r["identity_score"] is not None and r["identity_score"] >= 0.5  # type: ignore[operator]
                                                    for r in on)
    assert f"({summary['identity_hits_probable']} with probability &gt;= 0.5)" in page  # HTML-escaped
    # the shipped analogue trust table is for the bundled model at the job's default candidate pool
    assert summary["analogue_trust"]["note"] is None
    assert summary["analogue_trust"]["estimated_share_below_0.4"] is not None


def test_analogue_trust_is_not_reported_for_another_candidate_pool(tmp_path: Path) -> None:
    """The trust table holds for the pool it was measured with (10): a job re-scoring 20 candidates gets no
    estimate, and its summary says why."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["annotate", str(DATA / "massbank" / "massbank.msp"), "--out", str(out),
                                       "--analogue-candidates", "20", "--no-fragments"])
    assert result.exit_code == 0, result.output
    trust = json.loads((out / "summary.json").read_text())["analogue_trust"]
    assert trust["estimated_share_below_0.4"] is None
    assert "measured with 10 analogue candidates" in trust["note"] and "used 20" in trust["note"]
    assert "no estimate of how many are below Tanimoto 0.4" in result.output


def test_candidate_ensemble_changes_only_candidate_columns(tmp_path: Path) -> None:
    """--candidate-ensemble ranks with the bundled members too: identity and analogue columns stay as they
    are, the job fingerprint names the members, and the flag given to a finished run without it replaces its
    results (never a mix of the two)."""
    bundled = Path(__file__).resolve().parents[2] / "engine" / "data" / "candidates" / "molecules.parquet"
    query = [str(DATA / "massbank" / "massbank.msp")]
    rows = {}
    for flags in ((), ("--candidate-ensemble",)):
        out = tmp_path / ("ensemble" if flags else "single")
        result = CliRunner().invoke(main, ["annotate", *query, "--out", str(out), "--candidates", str(bundled),
                                           "--no-fragments", "--quiet", *flags])
        assert result.exit_code == 0, result.output
        rows[flags] = results(out)
    single, ensemble = rows[()], rows[("--candidate-ensemble",)]
    cand_cols = {"candidate_score", "candidate_smiles", "candidate_inchikey", "candidate_formula"}
    assert len(single) == len(ensemble) and sum(r["candidate_smiles"] is not None for r in ensemble) >= 20
    for a, b in zip(single, ensemble, strict=True):
        assert {k: v for k, v in a.items() if k not in cand_cols} == {k: v for k, v in b.items() if k not in cand_cols}
    assert any(a["candidate_score"] != b["candidate_score"] for a, b in zip(single, ensemble, strict=True))
    fingerprint = json.dumps(json.loads((tmp_path / "ensemble" / "job.json").read_text()))
    assert "ensemble_members" in fingerprint
    result = CliRunner().invoke(main, ["annotate", *query, "--out", str(tmp_path / "single"), "--candidates",
                                       str(bundled), "--no-fragments", "--quiet", "--candidate-ensemble"])
    assert result.exit_code == 0, result.output
    assert results(tmp_path / "single") == ensemble
