"""One settings object per job: every option of annotate / search / rank is a settings field with the same
default, ``--config`` reads them (unknown keys name key and file), explicit flags win, the resolved
settings land in job.json and summary.json, spectra ranking drops are counted, ``--device`` and the
CLI's ``-v`` / ``--quiet`` logging behave."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from engine.commands.annotate import annotate
from engine.commands.cli import main
from engine.commands.rank import rank
from engine.commands.search import search
from engine.jobs.settings import AnnotateJobSettings, RankSettings, SearchSettings
from engine.models.device import DeviceUnavailableError, resolve_device

DATA = Path(__file__).resolve().parents[1] / "data"
MGF = DATA / "massbank" / "massbank.mgf"
BUNDLED_CANDIDATES = Path(__file__).resolve().parents[2] / "engine" / "data" / "candidates" / "molecules.parquet"

#: command -> (settings class, parameter -> field renames, parameters that are not settings)
COMMANDS: list[tuple[click.Command, type, dict[str, str], set[str]]] = [
    (annotate, AnnotateJobSettings, {}, {"inputs", "out", "dry_run", "config_path"}),
    (search, SearchSettings, {"library_path": "library", "model_path": "model", "report_path": "report"},
     {"queries", "config_path"}),
    (rank, RankSettings, {"report_path": "report"}, {"queries", "config_path"}),
]


@pytest.mark.parametrize(("command", "cls", "rename", "other"), COMMANDS, ids=["annotate", "search", "rank"])
def test_every_option_is_a_setting_with_the_same_default(command: click.Command, cls: type, rename: dict[str, str],
                                                         other: set[str]) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    ctx = click.Context(command)
    options = {rename.get(p.name, p.name): p for p in command.params if p.name not in other}
    assert set(options) == set(fields), f"options without a field: {set(options) - set(fields)}; " \
                                        f"fields without an option: {set(fields) - set(options)}"
    for name, param in options.items():
        default = param.get_default(ctx)
        expected = fields[name].default
        if getattr(param, "multiple", False):
            default = tuple(default) if isinstance(default, (list, tuple)) else ()  # unset: none given
        assert default == expected, f"--{name}: click default {default!r}, settings default {expected!r}"


def _records(n: int, *, formula_in_first: int) -> str:
    """The first ``n`` records of the MassBank MGF; FORMULA kept only in the first ``formula_in_first``."""
    blocks = MGF.read_text().split("END IONS\n")[:n]
    out = []
    for i, block in enumerate(blocks):
        lines = block.splitlines()
        if i >= formula_in_first:
            lines = [line for line in lines if not line.startswith("FORMULA=")]
        out.append("\n".join(lines) + "\nEND IONS\n")
    return "".join(out)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One annotate run: config file plus overriding flags, candidates by formula, 2 of 4 spectra without one."""
    root = tmp_path_factory.mktemp("settings")
    queries = root / "q.mgf"
    queries.write_text(_records(4, formula_in_first=2))
    config = root / "job.toml"
    config.write_text('candidates_by = "formula"\ncandidate_tolerance_ppm = 5.0\nlibrary_evidence = false\n'
                      'fragment_scoring = false\nchunk_size = 2\ndevice = "cuda"\nquiet = true\nthreads = 1\n')
    out = root / "out"
    res = CliRunner().invoke(annotate, [str(queries), "--out", str(out), "--config", str(config),
                                        "--candidates", str(BUNDLED_CANDIDATES), "--chunk-size", "3",
                                        "--device", "cpu"])
    return out, res


def test_config_file_and_explicit_flags(job: tuple[Path, Any]) -> None:
    out, res = job
    assert res.exit_code == 0, res.output
    settings = json.loads((out / "job.json").read_text())["settings"]
    assert settings["candidates_by"] == "formula" and settings["candidate_tolerance_ppm"] == 5.0  # from the file
    assert settings["library_evidence"] is False and settings["threads"] == 1                     # from the file
    assert settings["chunk_size"] == 3 and settings["device"] == "cpu"                            # flags win
    assert settings["candidates"] == str(BUNDLED_CANDIDATES)                                      # flag only
    assert settings["precursor_tolerance_ppm"] == 10.0                                            # default
    assert settings == dataclasses.asdict(AnnotateJobSettings(**settings))  # complete and valid
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"] == settings and summary["device"] == "cpu"
    fingerprint = json.loads((out / "job.json").read_text())["fingerprint"]["settings"]
    assert fingerprint["chunk_size"] == 3 and "device" not in fingerprint and "threads" not in fingerprint


def test_ranking_drops_are_counted_in_the_summary(job: tuple[Path, Any]) -> None:
    out, res = job
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["annotated"] == 4
    assert summary["ranking_dropped"] == {"missing_formula": 2}
    assert "candidate ranking dropped missing_formula: 2" in res.output
    rows = pq.read_table(out / "results").to_pylist()
    reasons = sorted((r["candidates_skipped_reason"] or "") for r in rows)
    assert reasons == ["", "", "missing_formula", "missing_formula"]
    ranked = [r for r in rows if r["candidates_skipped_reason"] is None]
    assert all(r["candidates_invalid"] == 0 for r in ranked)


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("chunk_size = 8\ncandidate_ppm = 5\n")
    res = CliRunner().invoke(annotate, [str(MGF), "--out", str(tmp_path / "o"), "--config", str(config)])
    assert res.exit_code == 2
    assert "candidate_ppm" in res.output and str(config) in res.output
    config.write_text('candidates_by = "smiles"\n')
    res = CliRunner().invoke(annotate, [str(MGF), "--out", str(tmp_path / "o"), "--config", str(config)])
    assert res.exit_code == 2 and str(config) in res.output and "candidates_by must be one of" in res.output
    assert not (tmp_path / "o").exists()


def test_rank_and_search_read_config(tmp_path: Path) -> None:
    config = tmp_path / "rank.toml"
    config.write_text('by = "mass"\ntop_k = 0\n')
    res = CliRunner().invoke(rank, [str(MGF), "--config", str(config), "--out", str(tmp_path / "r.parquet")])
    assert res.exit_code == 2 and "top_k must be >= 1" in res.output and str(config) in res.output
    res = CliRunner().invoke(rank, [str(MGF), "--config", str(config), "--top-k", "2"])
    assert res.exit_code == 2 and "out is required" in res.output
    res = CliRunner().invoke(search, [str(MGF)])
    assert res.exit_code == 2 and "library is required" in res.output


def test_device_auto_resolves_and_cuda_is_refused_without_a_gpu() -> None:
    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
        return
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailableError, match="--device cuda"):
        resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_device_cuda_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = CliRunner().invoke(annotate, [str(MGF), "--out", str(tmp_path / "o"), "--device", "cuda"])
    assert res.exit_code == 1 and "--device cuda" in res.output and "Traceback" not in res.output


def test_logging_verbose_and_quiet(tmp_path: Path) -> None:
    """No candidate table: rank logs (INFO) that it uses the bundled set; -v adds DEBUG records with their
    logger names, --quiet keeps only warnings."""
    queries = tmp_path / "q.mgf"
    queries.write_text(_records(2, formula_in_first=2))
    args = ["rank", str(queries), "--no-fragments", "--quiet", "--out", str(tmp_path / "r.parquet")]
    runner = CliRunner()
    plain = runner.invoke(main, args)
    assert plain.exit_code == 0, plain.output
    assert "bundled candidate set" in plain.stderr and "DEBUG" not in plain.stderr
    verbose = runner.invoke(main, ["-v", *args])
    assert verbose.exit_code == 0, verbose.output
    assert "DEBUG engine.models.device: device auto ->" in verbose.stderr
    assert "INFO engine.queries.candidate_sources: no candidate table given" in verbose.stderr
    quiet = runner.invoke(main, ["--quiet", *args])
    assert quiet.exit_code == 0, quiet.output
    assert "bundled candidate set" not in quiet.stderr and "device auto" not in quiet.stderr
