"""engine network end to end on small real files: cross-mode edges, component cap, files, growth, inputs."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from engine.commands.cli import main
from engine.jobs.network import NetworkSettings, build_network
from engine.jobs.network_files import PAIRS_COLUMNS

DATA = Path(__file__).resolve().parents[1] / "data"
MASSBANK = DATA / "massbank" / "massbank.mgf"          # 20 positive, 20 negative spectra
SAMPLE = DATA / "queries" / "massbank_sample.parquet"  # 214 MassBank spectra, both modes
MZMINE = DATA / "dialects" / "mzmine.mgf"              # feature-based export (FEATURE_ID, SCANS, RTINSECONDS)
LOW = 0.3  # a low min-score so that these few spectra connect


def edges_by_id(out: Path) -> list[tuple[str, str, float]]:
    t = pq.read_table(out / "edges.parquet").to_pylist()
    return sorted((min(r["source_id"], r["target_id"]), max(r["source_id"], r["target_id"]),
                   round(r["predicted_tanimoto"], 6)) for r in t)


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("net") / "both"
    result = CliRunner().invoke(main, ["network", str(MASSBANK), str(MZMINE), "--out", str(out), "--min-score",
                                       str(LOW), "--rescore", "modified-cosine"])
    assert result.exit_code == 0, result.output
    return out


def test_cross_mode_edges_exist_and_files_are_written(both_modes: Path) -> None:
    for name in ("nodes.parquet", "edges.parquet", "network.graphml", "network.cyjs", "gnps_pairs.tsv",
                 "summary.json"):
        assert (both_modes / name).is_file(), name
    edges = pq.read_table(both_modes / "edges.parquet").to_pylist()
    nodes = pq.read_table(both_modes / "nodes.parquet")
    summary = json.loads((both_modes / "summary.json").read_text())
    assert summary["nodes"] == nodes.num_rows == 43
    assert summary["edges"] == len(edges) > 0
    cross = [e for e in edges if e["cross_mode"]]
    assert cross and summary["cross_mode_edges"] == len(cross)
    modes = dict(zip(nodes.column("node_id").to_pylist(), nodes.column("ion_mode").to_pylist(), strict=True))
    assert all(modes[e["source"]] != modes[e["target"]] for e in cross)
    assert all(e["predicted_tanimoto"] >= LOW for e in edges)
    # the re-score is matchms' modified cosine, with matched peaks
    assert all(0.0 <= e["modified_cosine"] <= 1.0 + 1e-6 and e["matched_peaks"] >= 0 for e in edges)


def test_feature_based_input_keeps_feature_id_and_retention_time(both_modes: Path) -> None:
    nodes = pq.read_table(both_modes / "nodes.parquet").to_pylist()
    features = [n for n in nodes if n["source_file"].endswith("mzmine.mgf")]
    assert sorted(n["feature_id"] for n in features) == ["1", "2", "3"]
    assert all(n["retention_time"] is not None and n["retention_time"] > 0 for n in features)


def test_graphml_opens_in_networkx_with_typed_attributes(both_modes: Path) -> None:
    g = nx.read_graphml(both_modes / "network.graphml")
    nodes = pq.read_table(both_modes / "nodes.parquet")
    assert g.number_of_nodes() == nodes.num_rows
    assert g.number_of_edges() == pq.read_table(both_modes / "edges.parquet").num_rows
    _, attrs = next(iter(g.nodes(data=True)))
    assert isinstance(attrs["precursor_mz"], float) and isinstance(attrs["node_id"], int)
    assert isinstance(attrs["ion_mode"], str)
    _, _, eattrs = next(iter(g.edges(data=True)))
    assert isinstance(eattrs["predicted_tanimoto"], float) and isinstance(eattrs["cross_mode"], bool)
    cy = json.loads((both_modes / "network.cyjs").read_text())
    assert len(cy["elements"]["nodes"]) == nodes.num_rows


def test_gnps_pairs_table(both_modes: Path) -> None:
    lines = (both_modes / "gnps_pairs.tsv").read_text().splitlines()
    assert tuple(lines[0].split("\t")) == PAIRS_COLUMNS
    rows = [ln.split("\t") for ln in lines[1:]]
    summary = json.loads((both_modes / "summary.json").read_text())
    assert len(rows) == summary["edges"] + summary["singletons"]
    assert all(int(r[6]) >= 1 for r in rows[:summary["edges"]])
    assert all(r[0] == r[1] and r[6] == "-1" for r in rows[summary["edges"]:])


def test_no_cross_mode_removes_cross_edges(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = CliRunner().invoke(main, ["network", str(MASSBANK), "--out", str(out), "--min-score", str(LOW),
                                       "--no-cross-mode"])
    assert result.exit_code == 0, result.output
    edges = pq.read_table(out / "edges.parquet").to_pylist()
    assert edges and not any(e["cross_mode"] for e in edges)


def test_component_size_cap(tmp_path: Path) -> None:
    free = build_network([SAMPLE], tmp_path / "free", settings=NetworkSettings(min_score=LOW, max_component_size=0))
    assert free.largest_component > 8
    capped = build_network([SAMPLE], tmp_path / "cap", settings=NetworkSettings(min_score=LOW, max_component_size=8))
    nodes = pq.read_table(tmp_path / "cap" / "nodes.parquet")
    sizes = np.bincount(np.maximum(nodes.column("component").to_numpy(), 0))[1:]
    assert capped.largest_component <= 8 and sizes.max() <= 8
    assert (nodes.column("component_size").to_numpy() <= 8).all()
    assert capped.edges < free.edges


def test_growing_equals_building_from_scratch(tmp_path: Path) -> None:
    settings = NetworkSettings(min_score=LOW, max_component_size=20)
    grown = tmp_path / "grown"
    first = build_network([MASSBANK], grown, settings=settings)
    second = build_network([MASSBANK, SAMPLE], grown, settings=settings)
    assert second.nodes_added == second.spectra_embedded == 214 and second.inputs_added == 1
    # old pairs are not scored again: only new-vs-all and old-vs-new candidates
    assert second.candidate_pairs_scored <= (214 + first.nodes) * settings.top_k
    scratch = tmp_path / "scratch"
    build_network([MASSBANK, SAMPLE], scratch, settings=settings)
    assert edges_by_id(grown) == edges_by_id(scratch)
    cols = ["query_id", "component", "component_size", "neighbour_node_id"]
    grown_nodes = pq.read_table(grown / "nodes.parquet").select(cols)
    assert grown_nodes.equals(pq.read_table(scratch / "nodes.parquet").select(cols))
    third = build_network([MASSBANK, SAMPLE], grown, settings=settings)   # nothing new: nothing embedded
    assert third.spectra_embedded == 0 and third.candidate_pairs_scored == 0


def test_empty_and_single_spectrum_inputs_give_empty_networks(tmp_path: Path) -> None:
    empty = build_network([DATA / "bad" / "empty.mgf"], tmp_path / "empty")
    assert empty.nodes == 0 and empty.edges == 0 and empty.note
    assert pq.read_table(tmp_path / "empty" / "edges.parquet").num_rows == 0
    one = tmp_path / "one.mgf"
    text = MASSBANK.read_text()
    one.write_text(text[:text.index("END IONS") + len("END IONS")] + "\n")
    single = build_network([one], tmp_path / "single")
    assert single.nodes == 1 and single.edges == 0 and single.singletons == 1 and single.note
    assert nx.read_graphml(tmp_path / "single" / "network.graphml").number_of_nodes() == 1


def test_invalid_spectra_are_skipped_and_counted(tmp_path: Path) -> None:
    summary = build_network([DATA / "bad" / "nan_inf_negative.mgf", MZMINE], tmp_path / "bad")
    assert summary.nodes >= 3 and sum(summary.skipped.values()) >= 1
    saved = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert saved["skipped_by_reason"] == dict(summary.skipped)


@pytest.mark.slow
def test_annotate_output_is_reused_without_embedding(tmp_path: Path) -> None:
    job = tmp_path / "job"
    result = CliRunner().invoke(main, ["annotate", str(MASSBANK), "--out", str(job), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = build_network([job], tmp_path / "net", settings=NetworkSettings(min_score=LOW))
    assert summary.nodes == 40 and summary.spectra_embedded == 0
    nodes = pq.read_table(tmp_path / "net" / "nodes.parquet").to_pylist()
    assert sum(n["annotation_library_id"] is not None for n in nodes) >= 30  # MassBank spectra match themselves
    from_files = build_network([MASSBANK], tmp_path / "files", settings=NetworkSettings(min_score=LOW))
    assert from_files.spectra_embedded == 40
    assert edges_by_id(tmp_path / "net") == edges_by_id(tmp_path / "files")


def test_report_draws_components_sizes_and_a_chosen_edge(both_modes: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(both_modes), "--out", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3 and "<script" not in text
    assert "Largest components" in text and "Component sizes" in text
    edge = pq.read_table(both_modes / "edges.parquet").filter(pq.read_table(
        both_modes / "edges.parquet").column("cross_mode")).slice(0, 1).to_pylist()[0]
    chosen = tmp_path / "edge.html"
    result = CliRunner().invoke(main, ["report", str(both_modes), "--out", str(chosen),
                                       "--edge", f"{edge['source_id']},{edge['target_id']}"])
    assert result.exit_code == 0, result.output
    assert f"{edge['source_id']} vs {edge['target_id']}" in chosen.read_text()
    assert "cross-mode" in chosen.read_text()
    bad = CliRunner().invoke(main, ["report", str(both_modes), "--out", str(chosen), "--edge", "nope,nothing"])
    assert bad.exit_code != 0 and "no such node" in bad.output


@pytest.mark.slow
def test_library_annotates_nodes_and_neighbours_inherit(tmp_path: Path) -> None:
    from engine.jobs.locations import DEFAULT_LIBRARY

    summary = build_network([MASSBANK, SAMPLE], tmp_path / "net", library=str(DEFAULT_LIBRARY),
                            settings=NetworkSettings(min_score=LOW))
    nodes = pq.read_table(tmp_path / "net" / "nodes.parquet").to_pylist()
    own = [n for n in nodes if n["annotation_library_id"] is not None]
    inherited = [n for n in nodes if n["neighbour_annotation"] is not None]
    assert summary.annotated_nodes == len(own) > 0 and summary.neighbour_annotated_nodes == len(inherited)
    assert all(n["annotation_library_id"] is None for n in inherited)
    assert all(0.0 <= n["neighbour_reliability"] <= 1.0 for n in inherited)


def test_entropy_rescore_adds_similarity_and_matched_peaks(tmp_path: Path) -> None:
    build_network([MASSBANK], tmp_path / "net", settings=NetworkSettings(min_score=LOW, rescore="entropy"))
    edges = pq.read_table(tmp_path / "net" / "edges.parquet").to_pylist()
    assert edges and all(0.0 <= e["entropy"] <= 1.0 + 1e-6 and e["matched_peaks"] >= 0 for e in edges)
    pairs = (tmp_path / "net" / "gnps_pairs.tsv").read_text().splitlines()[1]
    first = edges[0]
    assert float(pairs.split("\t")[5]) == pytest.approx(round(first["entropy"], 4), abs=1e-4)  # OtherScore
