"""engine repository add / info: USI keys, incremental per dataset and file, index appends, stale retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.commands.cli import main
from engine.jobs.repository import add_files, repository_info
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from indexes.faiss_ivf import IndexPolicy
from indexes.manifest import IndexManifest

DATA = Path(__file__).resolve().parents[1] / "data"
MGF = DATA / "massbank" / "massbank.mgf"
MZML = DATA / "raw" / "matchms_testdata.mzML"


def add(repo: Path, dataset: str, *inputs: Path) -> dict[str, object]:
    result = CliRunner().invoke(main, ["repository", "add", *map(str, inputs), "--repo", str(repo), "--dataset",
                                       dataset, "--fixed-embedder", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_keys_by_usi_and_is_incremental(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = add(repo, "MSV000000001", MGF)
    assert first["inserted"] == 40 and first["rows"] == 40
    gen_before = {p.name: p.generation for p in IndexManifest.load(repo / "index").partitions}
    second = add(repo, "MSV000000002", MZML)
    assert second["inserted"] == 10 and second["rows"] == 50
    again = add(repo, "MSV000000001", MGF)
    assert again["inserted"] == 0 and again["files_unchanged"] == 1 and again["rows"] == 50
    # the same file under another dataset is another set of USIs
    other = add(repo, "MSV000000003", MGF)
    assert other["inserted"] == 40 and other["rows"] == 90

    info = json.loads(CliRunner().invoke(main, ["repository", "info", str(repo)]).stdout)
    assert info["spectra"] == 90 and info["files"] == 3
    assert info["datasets"] == {"MSV000000001": {"files": 1, "spectra": 40},
                                "MSV000000002": {"files": 1, "spectra": 10},
                                "MSV000000003": {"files": 1, "spectra": 40}}
    assert sum(p["rows"] for p in info["partitions"]) == 90
    # the matchms file is positive mode only: the negative partition was not touched by its dataset
    man = IndexManifest.load(repo / "index")
    assert man.n_rows == 90
    neg = [p for p in man.partitions if p.ion_mode == "negative"]
    assert neg and neg[0].generation != gen_before[neg[0].name]  # touched only by MSV000000003 (negatives)

    from indexes.library import Library

    keys = Library.open(repo).table.take_keys(["mzspec:MSV000000002:matchms_testdata:scan:11"], ["spectrum_id"])
    assert keys.num_rows == 1


def test_adding_never_rebuilds_and_retrains_stale_partitions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    emb = FixedSpectrumEmbedder()
    policy = IndexPolicy(flat_max_rows=25, min_nlist=2, rows_per_list=4, train_rows_per_list=8, min_tail_rows=1)
    add_files([MGF], repo, emb, dataset="MSV000000001", policy=policy, progress=False)
    first = {p.name: (p.generation, p.kind, p.n_rows) for p in IndexManifest.load(repo / "index").partitions}
    result = add_files([MZML], repo, emb, dataset="MSV000000002", policy=policy, progress=False)
    after = {p.name: (p.generation, p.kind, p.n_rows) for p in IndexManifest.load(repo / "index").partitions}
    # positive-mode rows were appended and the grown partition retrained as IVF; negative left as it was
    assert after["negative-000"] == first["negative-000"]
    assert after["positive-000"][2] == first["positive-000"][2] + 10
    assert after["positive-000"][1] == "ivf_flat" and result.retrained == ["positive-000"]
    assert repository_info(repo)["stale_partitions"] == {}


def test_bad_dataset_and_foreign_ids_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["repository", "add", str(MGF), "--repo", str(tmp_path / "r"),
                                       "--dataset", "not-an-accession", "--fixed-embedder", "--quiet"])
    assert result.exit_code != 0 and "accession" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("query", [["--usi", "mzspec:MSV000000001:massbank:index:0"]])
def test_lookup_command_finds_the_spectrum_itself(tmp_path: Path, query: list[str]) -> None:
    repo = tmp_path / "repo"
    add(repo, "MSV000000001", MGF)
    result = CliRunner().invoke(main, ["lookup", "--repo", str(repo), *query, "--mode", "identity", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["usi"] == query[1] and hits[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert hits[0]["dataset"] == "MSV000000001" and hits[0]["mass_difference"] == 0.0
    bad = CliRunner().invoke(main, ["lookup", "--repo", str(repo), "--usi", "mzspec:MSV000000001:nope:scan:1"])
    assert bad.exit_code != 0 and "not in the repository" in bad.output


def test_annotate_stores_its_embeddings_in_the_repository(tmp_path: Path) -> None:
    import numpy as np

    from indexes.library import Library

    lib = tmp_path / "lib"
    built = CliRunner().invoke(main, ["library", "build", str(MGF), "--out", str(lib), "--fixed-embedder", "--quiet"])
    assert built.exit_code == 0, built.output
    repo = tmp_path / "repo"
    args = ["annotate", str(MZML), "--out", str(tmp_path / "out"), "--library", str(lib), "--quiet",
            "--repository", str(repo)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "dataset" in refused.output
    result = CliRunner().invoke(main, [*args, "--dataset", "MSV000000002"])
    assert result.exit_code == 0, result.output
    info = repository_info(repo)
    assert info["spectra"] == 10 and info["datasets"] == {"MSV000000002": {"files": 1, "spectra": 10}}
    # the same embeddings as `repository add` makes (the annotation's own, not a second embedding)
    direct = tmp_path / "direct"
    add_files([MZML], direct, FixedSpectrumEmbedder(), dataset="MSV000000002", progress=False)
    a = Library.open(repo).table.take_keys(["mzspec:MSV000000002:matchms_testdata:scan:11"], ["embedding"])
    b = Library.open(direct).table.take_keys(["mzspec:MSV000000002:matchms_testdata:scan:11"], ["embedding"])
    np.testing.assert_allclose(a.column("embedding").to_pylist()[0], b.column("embedding").to_pylist()[0], atol=1e-6)
    again = CliRunner().invoke(main, [*args, "--dataset", "MSV000000002"])
    assert again.exit_code == 0 and repository_info(repo)["spectra"] == 10
