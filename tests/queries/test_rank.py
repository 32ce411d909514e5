"""Candidate ranking through the library API and the CLI (bundled candidates, lists, PubChem fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from query_helpers import write_mgf

from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.queries.candidates import CandidateQuery, MoleculeTable, read_candidate_lists, select_candidates
from engine.queries.fragments import FragmentScorer, FragmentWeights
from engine.queries.rank import (
    ENSEMBLE_COSINE_SCALE,
    ENSEMBLE_FRAGMENT_WEIGHTS,
    RANK_SCHEMA,
    RankReport,
    fragment_scores,
    rank_candidates,
)

BUNDLED = Path(__file__).resolve().parents[2] / "engine" / "data" / "candidates" / "molecules.parquet"


def test_rank_candidate_lists(tmp_path: Path, tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    queries = sample_spectra[:3]
    path = tmp_path / "lists.parquet"
    smiles = ["CCO", "CCN", "c1ccccc1O", "not a smiles", "CC(=O)O"]
    pq.write_table(pa.table({"query_id": [queries[0].spectrum_id] * 4 + [queries[1].spectrum_id],
                             "smiles": smiles, "extra": [1, 2, 3, 4, 5]}), path)
    report = RankReport()
    result = rank_candidates(spectra_to_batch(queries), read_candidate_lists(path), tiny_model, top_k=2,
                             report=report)
    assert result.schema.equals(RANK_SCHEMA, check_metadata=False)
    rows = result.to_pylist()
    assert [r["rank"] for r in rows if r["query_id"] == queries[0].spectrum_id] == [1, 2]
    assert {r["smiles"] for r in rows} <= set(smiles) - {"not a smiles"}
    assert report.invalid_smiles == 1 and report.queries_without_candidates == 1
    first = [r for r in rows if r["query_id"] == queries[0].spectrum_id]
    assert first[0]["score"] >= first[1]["score"] and first[0]["n_candidates"] == 3
    assert first[0]["inchikey"] and first[0]["formula"]  # filled in by RDKit
    assert sum(r["probability"] for r in first) <= 1.0 + 1e-6
    only = [r for r in rows if r["query_id"] == queries[1].spectrum_id]
    assert len(only) == 1 and only[0]["probability"] == pytest.approx(1.0)


def test_rank_bundled_candidates_by_formula(tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    queries = [s for s in sample_spectra if s.formula][:10]
    molecules = MoleculeTable.open(BUNDLED)
    cands = select_candidates([CandidateQuery.from_spectrum(s) for s in queries], molecules, by="formula")
    result = rank_candidates(spectra_to_batch(queries), cands, tiny_model, top_k=5)
    assert set(result.column("query_id").to_pylist()) <= {q.spectrum_id for q in queries}
    by_q = {q.spectrum_id: q.formula for q in queries}
    assert all(f == by_q[q] for q, f in zip(result.column("query_id").to_pylist(),
                                            result.column("formula").to_pylist(), strict=True))
    score = result.column("score").to_numpy()
    assert np.all(np.abs(score) <= 1.0 + 1e-5)


def test_rank_command(tmp_path: Path, tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    from engine.commands.rank import rank

    model_path = tmp_path / "model.pt"
    tiny_model.save(model_path)  # type: ignore[attr-defined]
    mgf = write_mgf(sample_spectra[:6], tmp_path / "q.mgf")
    out = tmp_path / "ranked.parquet"
    runner = CliRunner()
    res = runner.invoke(rank, [str(mgf), "--model", str(model_path), "--candidates", str(BUNDLED), "--by", "mass",
                               "--tolerance-ppm", "20", "--top-k", "3", "--out", str(out), "--quiet",
                               "--processes", "2"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert {"query_id", "rank", "score", "smiles", "inchikey", "formula"} <= set(table.column_names)
    assert max(table.column("rank").to_pylist()) <= 3
    # fragment evidence is on by default: every parsed candidate has a fragment score, --no-fragments drops it
    assert table.num_rows and table.column("fragment_score").null_count == 0
    plain = tmp_path / "plain.parquet"
    res = runner.invoke(rank, [str(mgf), "--model", str(model_path), "--candidates", str(BUNDLED), "--by", "mass",
                               "--tolerance-ppm", "20", "--top-k", "3", "--out", str(plain), "--quiet",
                               "--no-fragments"])
    assert res.exit_code == 0, res.output
    untouched = pq.read_table(plain).to_pylist()
    assert all(r["fragment_score"] is None and r["score"] == r["cosine"] for r in untouched)
    # PubChem offline (or any answer): with --candidates as fallback the command still succeeds
    res = runner.invoke(rank, [str(mgf), "--model", str(model_path), "--pubchem", "--pubchem-timeout", "3",
                               "--pubchem-cache", str(tmp_path / "pc.sqlite"), "--candidates", str(BUNDLED),
                               "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out).num_rows > 0
    res = runner.invoke(rank, [str(mgf), "--model", str(model_path), "--candidate-lists", str(out), "--pubchem",
                               "--out", str(out)])
    assert res.exit_code != 0 and "excludes" in res.output


BAD_RECORDS = ("BEGIN IONS\nTITLE=no_precursor\nPEPMASS=abc\n100.0 5\nEND IONS\n"
               "BEGIN IONS\nTITLE=negative\nPEPMASS=300.1\nIONMODE=positive\n100 10\n200 -5\nEND IONS\n")


def test_rank_command_reports_skipped_records(tmp_path: Path, tiny_model: object,
                                              sample_spectra: list[Spectrum]) -> None:
    from engine.commands.rank import rank

    model_path = tmp_path / "model.pt"
    tiny_model.save(model_path)  # type: ignore[attr-defined]
    mgf = write_mgf(sample_spectra[:3], tmp_path / "q.mgf")
    mgf.write_text(mgf.read_text() + BAD_RECORDS)
    args = [str(mgf), "--model", str(model_path), "--candidates", str(BUNDLED), "--by", "mass", "--quiet",
            "--no-fragments", "--out", str(tmp_path / "r.parquet")]
    res = CliRunner().invoke(rank, args)
    assert res.exit_code != 0 and "q.mgf" in res.output and "no_precursor" in res.output
    rejects = tmp_path / "rejects.parquet"
    res = CliRunner().invoke(rank, [*args, "--on-invalid", "skip", "--report", str(rejects)])
    assert res.exit_code == 0, res.output
    assert "3 query spectra (2 skipped)" in res.output
    assert "skipped parse_error: 1" in res.output and "skipped negative_values: 1" in res.output
    rows = pq.read_table(rejects).to_pylist()
    assert [(r["file"], r["reason"]) for r in rows] == [(str(mgf), "parse_error"), (str(mgf), "negative_values")]
    assert "no_precursor" in rows[0]["record"] and "PEPMASS" in rows[0]["message"]


def test_rank_ensemble_averages_member_cosines(tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    """With members the cosine is the mean of the model's and each member's own spectrum-molecule cosine."""
    from engine.jobs.artifacts import open_model

    member = open_model(None)   # the bundled default model: another space, another dimension
    queries = spectra_to_batch(sample_spectra[:4])
    smiles = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "not a smiles"]
    cands = pa.table({"query_id": [q for q in queries.column("spectrum_id").to_pylist() for _ in smiles],
                      "smiles": smiles * 4})

    def cosines(model: object, members: list[object]) -> dict[tuple[str, str], float]:
        table = rank_candidates(queries, cands, model, top_k=10, members=members)
        factor = ENSEMBLE_COSINE_SCALE if members else 1.0   # no fragment or library evidence here
        assert all(r["score"] == pytest.approx(factor * r["cosine"], abs=1e-5) for r in table.to_pylist())
        return {(r["query_id"], r["smiles"]): r["cosine"] for r in table.to_pylist()}

    own, other, mean = cosines(tiny_model, []), cosines(member, []), cosines(tiny_model, [member])
    assert len(mean) == 16 and set(mean) == set(own) == set(other)   # the invalid SMILES skipped once per query
    for key, value in mean.items():
        assert value == pytest.approx((own[key] + other[key]) / 2, abs=1e-5)


def test_rank_ensemble_uses_its_own_fragment_weights(tiny_model: object) -> None:
    """One model adds the scorer's fragment score; an ensemble adds the score at ENSEMBLE_FRAGMENT_WEIGHTS."""
    from engine.jobs.artifacts import open_model

    assert FragmentWeights() != ENSEMBLE_FRAGMENT_WEIGHTS
    member = open_model(None)
    # paracetamol [M+H]+ with its usual fragments (ketene loss 110.06, then NH3 93.03, 65.04)
    spectra = [Spectrum(f"q{i}", np.array([65.0386, 93.0335, 110.0600, 152.0706]),
                        np.array([20.0, 35.0, 100.0, 40.0 + i], dtype=np.float32), 152.0706, 1, "positive",
                        adduct="[M+H]+") for i in range(3)]
    queries = spectra_to_batch(spectra)
    qids = queries.column("spectrum_id").to_pylist()
    smiles = ["CC(=O)Nc1ccc(O)cc1", "CC(=O)Nc1ccccc1O", "COC(=O)c1ccc(N)cc1", "NC(=O)c1ccccc1OC"]
    cands = pa.table({"query_id": [q for q in qids for _ in smiles], "smiles": smiles * 3})
    scorer = FragmentScorer()
    for members, weights in (([], FragmentWeights()), ([member], ENSEMBLE_FRAGMENT_WEIGHTS)):
        table = rank_candidates(queries, cands, tiny_model, top_k=10, members=members, fragments=scorer)
        rows = table.to_pylist()
        qi = np.asarray([qids.index(r["query_id"]) for r in rows], dtype=np.int64)
        expected, _ = fragment_scores(scorer, queries, tiny_model, qi, [r["smiles"] for r in rows], weights=weights)
        other, _ = fragment_scores(scorer, queries, tiny_model, qi, [r["smiles"] for r in rows],
                                   weights=FragmentWeights() if members else ENSEMBLE_FRAGMENT_WEIGHTS)
        factor = ENSEMBLE_COSINE_SCALE if members else 1.0
        assert np.isfinite(expected).all() and len(rows) == 12 and not np.allclose(expected, other)
        for r, frag in zip(rows, expected, strict=True):
            assert r["fragment_score"] == pytest.approx(frag, abs=1e-5)
            assert r["score"] == pytest.approx(factor * r["cosine"] + frag, abs=1e-4)
    assert scorer.weights == FragmentWeights()   # the caller's scorer is left as it was


def test_rank_command_with_bundled_ensemble(tmp_path: Path, sample_spectra: list[Spectrum]) -> None:
    from engine.commands.rank import rank
    from engine.core.paths import DEFAULT_MODEL, ENSEMBLE_MEMBERS

    assert len(list(ENSEMBLE_MEMBERS.glob("*.pt"))) == 3
    mgf = write_mgf(sample_spectra[:5], tmp_path / "q.mgf")
    args = [str(mgf), "--candidates", str(BUNDLED), "--by", "mass", "--tolerance-ppm", "20", "--quiet",
            "--no-fragments"]
    single, ensemble = tmp_path / "single.parquet", tmp_path / "ensemble.parquet"
    res = CliRunner().invoke(rank, [*args, "--out", str(single)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(rank, [*args, "--ensemble", "--out", str(ensemble)])
    assert res.exit_code == 0, res.output
    assert "ensemble: the model and 3 members" in res.output
    a, b = pq.read_table(single).to_pylist(), pq.read_table(ensemble).to_pylist()
    assert {r["query_id"] for r in a} == {r["query_id"] for r in b} and len(a) == len(b)
    assert any(abs(x["cosine"] - y["cosine"]) > 1e-4 for x, y in zip(a, b, strict=True))
    # a member counts once: the ranking model itself is refused with a message
    res = CliRunner().invoke(rank, [*args, "--ensemble-member", str(DEFAULT_MODEL), "--out", str(ensemble)])
    assert res.exit_code != 0 and "counts once" in res.output
