"""Identity, analogue and structure search on a real MassBank sample, through the library and the CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from query_helpers import build_test_library, split_queries, write_mgf

from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.models.calibration import fit_listwise, fit_logistic, load_calibration, reliability_table
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from engine.queries.analogue import AnalogueSettings, analogue_search, fallback_reliability
from engine.queries.hits import rank_and_score
from engine.queries.identity import IdentitySettings, identity_search
from engine.queries.references import References
from engine.queries.structure import StructureSettings, spectra_for_structures

COLUMNS = ["query_id", "rank", "score", "library_id", "inchikey", "smiles", "name", "precursor_mz",
           "mass_difference", "quality"]


@pytest.fixture(scope="module")
def fixed_library(tmp_path_factory: pytest.TempPathFactory, sample_spectra: list[Spectrum]) -> tuple:
    queries, refs = split_queries(sample_spectra)
    path = tmp_path_factory.mktemp("lib") / "library"
    embedder = FixedSpectrumEmbedder()
    return build_test_library(path, refs, embedder), embedder, queries, refs, path


def test_identity_hits_are_in_window_and_mostly_right(fixed_library: tuple) -> None:
    lib, embedder, queries, refs, _ = fixed_library
    by_id = {s.spectrum_id: s for s in refs}
    result = identity_search(spectra_to_batch(queries), lib, References(lib), embedder,
                             settings=IdentitySettings(top_k=3))
    assert set(COLUMNS) <= set(result.column_names)
    rows = result.to_pylist()
    q_by_id = {q.spectrum_id: q for q in queries}
    for r in rows:
        q, hit = q_by_id[r["query_id"]], by_id[r["library_id"]]
        assert hit.ion_mode == q.ion_mode
        assert abs(r["mass_difference"]) <= q.precursor_mz * 10e-6 + 1e-9  # type: ignore[operator]
        assert 0.0 <= r["score"] <= 1.0 and 1 <= r["rank"] <= 3
    # ranks are 1..n per query and scores fall with rank
    for qid in {r["query_id"] for r in rows}:
        mine = [r for r in rows if r["query_id"] == qid]
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1))
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(mine))
    top = [r for r in rows if r["rank"] == 1]
    has_match = {q.spectrum_id for q in queries
                 if any(s.inchikey == q.inchikey and s.ion_mode == q.ion_mode for s in refs)}
    correct = [r["inchikey"] == q_by_id[r["query_id"]].inchikey for r in top if r["query_id"] in has_match]
    assert len(correct) >= 15 and np.mean(correct) >= 0.8


def test_references_lookup_matches_preloaded(fixed_library: tuple) -> None:
    lib, *_ = fixed_library
    pre, lazy = References(lib), References(lib, preload=False)
    assert pre.preloaded and not lazy.preloaded
    rows = np.array([5, 0, 17, 5])
    assert pre.meta(rows).column("spectrum_id").to_pylist() == lazy.meta(rows).column("spectrum_id").to_pylist()
    a, b = pre.peaks(rows), lazy.peaks(rows)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.mz, b.mz)
    with pytest.raises(KeyError):
        pre.meta([10_000])


def test_analogue_respects_mass_difference(fixed_library: tuple) -> None:
    lib, embedder, queries, _, _ = fixed_library
    result = analogue_search(spectra_to_batch(queries), lib, References(lib), embedder,
                             settings=AnalogueSettings(top_k=5, max_mass_difference=50.0))
    assert result.num_rows > 0
    dm = np.abs(result.column("mass_difference").to_numpy())
    assert dm.max() <= 50.0 + 1e-9
    score = result.column("score").to_numpy()
    assert (score >= 0).all() and (score <= 1).all()
    wide = analogue_search(spectra_to_batch(queries), lib, References(lib), embedder,
                           settings=AnalogueSettings(top_k=5))
    assert np.abs(wide.column("mass_difference").to_numpy()).max() > 50.0


def test_reliability_falls_with_quality() -> None:
    feats = {"embedding_cosine": np.full(5, 0.8), "modified_cosine": np.full(5, 0.5),
             "quality": np.linspace(0.1, 0.9, 5)}
    assert np.all(np.diff(fallback_reliability(feats)) > 0)
    rng = np.random.default_rng(0)
    n = 400
    x = {k: rng.uniform(0, 1, n) for k in feats}
    tanimoto = np.clip(0.6 * x["embedding_cosine"] * x["quality"] + 0.1 * rng.uniform(0, 1, n), 0, 1)
    cal = fit_logistic("t", x, tanimoto)
    assert np.all(np.diff(cal.predict(feats)) > 0)
    assert np.corrcoef(cal.predict(x), tanimoto)[0, 1] > 0.8


def test_rank_and_score_orders_and_keeps_scores_monotone() -> None:
    qi = np.array([0, 0, 0, 1, 1, 2])
    feats = {"a": np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.7]), "b": np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])}
    ranker = fit_listwise("r", feats, qi, feats["a"], feature_names=["a"], temperature=0.05)
    keep, rank, score = rank_and_score(qi, feats, 2, ranker=ranker, scale=None, fallback_rank="a",
                                       fallback_score=feats["b"])
    assert keep.tolist() == [1, 2, 3, 4, 5] and rank.tolist() == [1, 2, 1, 2, 1]
    np.testing.assert_allclose(score, 0.0, atol=1e-12)  # non-increasing with rank inside each query
    keep, _, score = rank_and_score(qi, feats, 3, ranker=None, scale=None, fallback_rank="b",
                                    fallback_score=np.array([0.2, 0.9, 0.1, 0.5, 0.6, 0.3]))
    assert keep.tolist() == [0, 1, 2, 4, 3, 5]
    np.testing.assert_allclose(score, [0.2, 0.2, 0.1, 0.6, 0.5, 0.3], atol=1e-12)


def test_calibration_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 1, 2000)
    y = (rng.uniform(0, 1, 2000) < s).astype(float)  # perfectly calibrated source
    cal = fit_logistic("demo", {"s": s}, y, encoder_hash="abc")
    cal.save(tmp_path / "demo.json")
    assert load_calibration("demo", "abc", directory=tmp_path) == cal
    assert load_calibration("demo", "other", directory=tmp_path) is None
    table = reliability_table(cal.predict({"s": s}), y)
    assert all(abs(r["mean_score"] - r["observed"]) < 0.12 for r in table if r["n"] > 100)


def test_structure_to_spectra(tmp_path: Path, tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    lib = build_test_library(tmp_path / "lib", sample_spectra, tiny_model)
    smiles = [sample_spectra[0].smiles, sample_spectra[-1].smiles]
    result = spectra_for_structures(smiles, lib, References(lib), tiny_model,  # type: ignore[arg-type]
                                    settings=StructureSettings(top_k=4))
    assert result.num_rows == 8
    assert result.column("query_smiles").to_pylist()[:4] == [smiles[0]] * 4
    pos = spectra_for_structures(smiles, lib, References(lib), tiny_model,  # type: ignore[arg-type]
                                 settings=StructureSettings(top_k=4, adducts=("[M+H]+",)))
    # with the adduct window, every hit is a positive spectrum at the molecule's [M+H]+
    assert set(pos.column("ion_mode").to_pylist()) <= {"positive"}
    assert all(pos.column("same_structure").to_pylist())


def test_search_command(tmp_path: Path, fixed_library: tuple) -> None:
    from engine.commands.search import search

    _, _, queries, _, lib_path = fixed_library
    mgf = write_mgf(queries, tmp_path / "queries.mgf")
    out = tmp_path / "hits.parquet"
    runner = CliRunner()
    res = runner.invoke(search, [str(mgf), "--library", str(lib_path), "--top-k", "2", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert set(COLUMNS) <= set(table.column_names)
    assert set(table.column("query_id").to_pylist()) <= {q.spectrum_id for q in queries}
    assert pc.max(table.column("rank")).as_py() == 2
    res = runner.invoke(search, [str(mgf), "--library", str(lib_path), "--mode", "analogue",
                                 "--max-mass-difference", "30", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert np.abs(pq.read_table(out).column("mass_difference").to_numpy()).max() <= 30
    # the analogue pool bounds the hits: 3 embedding neighbours re-scored, so at most 3 hits per query
    res = runner.invoke(search, [str(mgf), "--library", str(lib_path), "--mode", "analogue", "--top-k", "10",
                                 "--analogue-candidates", "3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    per_query = pc.value_counts(pq.read_table(out).column("query_id")).field("counts").to_numpy()
    assert per_query.size and per_query.max() == 3
    res = runner.invoke(search, ["--library", str(lib_path)])
    assert res.exit_code != 0 and "QUERIES" in res.output
    res = runner.invoke(search, [str(mgf), "--library", str(lib_path), "--smiles", "CCO"])
    assert res.exit_code != 0 and "not both" in res.output


def test_empty_and_windowless_queries(fixed_library: tuple) -> None:
    lib, embedder, queries, _, _ = fixed_library
    far = Spectrum("far", queries[0].mz, queries[0].intensity, 4321.0, ion_mode="positive")
    result = identity_search(spectra_to_batch([far]), lib, References(lib), embedder)
    assert result.num_rows == 0 and "query_id" in result.column_names
    empty = identity_search(spectra_to_batch([]), lib, References(lib), embedder)
    assert empty.num_rows == 0
    assert isinstance(empty, pa.Table)
