"""Library evidence in candidate ranking: candidates whose own reference spectra do not match are demoted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from query_helpers import write_mgf

from engine.core.errors import IncompatibleArtifactError
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.jobs.library import build_library
from engine.queries.evidence import LibraryEvidence, structure_key
from engine.queries.rank import fill_identifiers, rank_candidates
from indexes.library import Library


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_similarity_and_adjust_rules() -> None:
    q = np.stack([_unit([1, 0, 0]), _unit([0, 1, 0])])
    ev = LibraryEvidence.from_arrays(
        ["AAAAAAAAAAAAAA-XXXXXXXXXX-N", "AAAAAAAAAAAAAA-YYYYYYYYYY-N", "BBBBBBBBBBBBBB-XXXXXXXXXX-N", None],
        ["positive", "positive", "negative", "positive"],
        np.stack([_unit([1, 0, 0]), _unit([0, 0, 1]), _unit([0, 1, 0]), _unit([1, 0, 0])]), encoder_hash="h")
    assert len(ev) == 3  # the row without an InChIKey is left out
    qi = np.array([0, 0, 1, 1, 0])
    keys = ["AAAAAAAAAAAAAA-ZZZZZZZZZZ-N", "BBBBBBBBBBBBBB-XXXXXXXXXX-N", "AAAAAAAAAAAAAA", "BBBBBBBBBBBBBB",
            "CCCCCCCCCCCCCC"]
    sim = ev.similarity(q, ["positive", "negative"], qi, keys)
    # same 2D skeleton (first block) matches whatever the stereo block; best of A's two references
    assert sim[0] == pytest.approx(1.0)
    assert np.isnan(sim[1])  # B has a reference only in negative mode; query 0 is positive
    assert np.isnan(sim[2])  # A has none in negative mode
    assert sim[3] == pytest.approx(1.0)
    assert np.isnan(sim[4])  # C has no reference at all
    score = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    adj = ev.adjust(score, np.array([1.0, np.nan, 0.0, np.nan, 0.95]))
    assert adj[0] == 0.5 and adj[1] == 0.5 and adj[4] == 0.5  # matching / no reference / at threshold
    assert adj[2] == pytest.approx(0.5 - ev.weight * ev.threshold)
    assert structure_key("AAAAAAAAAAAAAA-XXXXXXXXXX-N") == "AAAAAAAAAAAAAA" and structure_key("") is None


def test_rank_with_evidence_demotes_unmatched_reference(tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    query = sample_spectra[0]
    batch = spectra_to_batch([query])
    smiles = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O"]
    cands = pa.table({"query_id": [query.spectrum_id] * 4, "smiles": smiles, "inchikey": [None] * 4,
                      "formula": [None] * 4}, schema=pa.schema([("query_id", pa.string()), ("smiles", pa.string()),
                                                                ("inchikey", pa.string()), ("formula", pa.string())]))
    plain = rank_candidates(batch, cands, tiny_model, top_k=4)
    top = plain.column("smiles")[0].as_py()
    emb, _ = tiny_model.embed_spectra(batch)  # type: ignore[attr-defined]
    key = fill_identifiers([top])[0][0]
    # the top candidate has a reference spectrum in the query's mode pointing away from the query
    ev = LibraryEvidence.from_arrays([key], [query.ion_mode], -emb[:1],
                                     encoder_hash=tiny_model.encoder_hash)  # type: ignore[attr-defined]
    ranked = rank_candidates(batch, cands, tiny_model, top_k=4, evidence=ev)
    rows = {r["smiles"]: r for r in ranked.to_pylist()}
    assert rows[top]["rank"] == 4
    assert rows[top]["library_similarity"] == pytest.approx(-1.0, abs=1e-4)
    assert rows[top]["score"] == pytest.approx(rows[top]["cosine"] - ev.weight * (ev.threshold + 1.0), abs=1e-4)
    others = [r for s, r in rows.items() if s != top]
    assert all(r["library_similarity"] is None and r["score"] == r["cosine"] for r in others)
    # raw cosines are unchanged by the evidence
    assert dict(zip(plain.column("smiles").to_pylist(), plain.column("cosine").to_pylist(), strict=True)) == \
        {s: r["cosine"] for s, r in rows.items()}
    # a matching reference (the query itself) leaves the order alone
    same = LibraryEvidence.from_arrays([key], [query.ion_mode], emb[:1],
                                       encoder_hash=tiny_model.encoder_hash)  # type: ignore[attr-defined]
    again = rank_candidates(batch, cands, tiny_model, top_k=4, evidence=same)
    assert again.column("smiles").to_pylist() == plain.column("smiles").to_pylist()
    other = LibraryEvidence.from_arrays([key], [query.ion_mode], emb[:1], encoder_hash="another-model")
    with pytest.raises(IncompatibleArtifactError, match="another model"):
        rank_candidates(batch, cands, tiny_model, top_k=4, evidence=other)


def test_evidence_from_library_and_cli(tmp_path: Path, tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    from engine.commands.rank import rank
    from engine.models.encoders.fixed import FixedSpectrumEmbedder
    from engine.models.model import load_model

    model_path = tmp_path / "model.pt"
    tiny_model.save(model_path)  # type: ignore[attr-defined]
    model = load_model(model_path)  # float16 checkpoint: its own encoder hash
    refs = [s for s in sample_spectra if s.inchikey][:8]
    lib_path = tmp_path / "lib"
    build_library([write_mgf(refs, tmp_path / "refs.mgf")], lib_path, model, progress=False)
    ev = LibraryEvidence.from_library(Library.open(lib_path), encoder_hash=model.encoder_hash, dim=model.dim)
    assert len(ev) == len(refs) and ev.measure == "entropy"
    assert len(ev.reference_peaks(np.arange(len(refs))).peaks) == len(refs)  # type: ignore[misc]
    assert {k for k, _ in ev.groups} == {structure_key(s.inchikey) for s in refs}
    fixed_lib = tmp_path / "fixed"
    build_library([tmp_path / "refs.mgf"], fixed_lib, FixedSpectrumEmbedder(dim=32), progress=False)
    with pytest.raises(IncompatibleArtifactError):
        LibraryEvidence.from_library(Library.open(fixed_lib), encoder_hash=model.encoder_hash, dim=model.dim)

    queries = write_mgf(refs[:3], tmp_path / "q.mgf")
    lists = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"query_id": [r.spectrum_id for r in refs[:3] for _ in range(2)],
                             "smiles": [s for r in refs[:3] for s in (r.smiles, "CCO")]}), lists)
    out = tmp_path / "ranked.parquet"
    res = CliRunner().invoke(rank, [str(queries), "--model", str(model_path), "--candidate-lists", str(lists),
                                    "--library", str(lib_path), "--out", str(out), "--quiet",
                                        "--no-fragments"])
    assert res.exit_code == 0, res.output
    assert "candidates had reference spectra in the library" in res.output
    table = pq.read_table(out).to_pylist()
    # each query's own structure has its own spectrum as reference: cosine 1, kept on top of the score order
    own = [r for r in table if r["smiles"] != "CCO"]
    assert own and all(r["library_similarity"] == pytest.approx(1.0, abs=1e-4) for r in own)
    assert all(r["score"] == r["cosine"] for r in own)


def test_entropy_evidence_compares_peaks(tiny_model: object, sample_spectra: list[Spectrum]) -> None:
    from engine.core.peaks import Peaks
    from engine.queries.evidence import ENTROPY_THRESHOLD, ENTROPY_WEIGHT
    from engine.queries.similarity import entropy_similarity

    query = sample_spectra[0]
    other = next(s for s in sample_spectra if s.ion_mode == query.ion_mode and s.inchikey != query.inchikey)
    batch = spectra_to_batch([query])
    smiles = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O"]
    cands = pa.table({"query_id": [query.spectrum_id] * 4, "smiles": smiles})
    plain = rank_candidates(batch, cands, tiny_model, top_k=4)
    top = plain.column("smiles")[0].as_py()
    key = fill_identifiers([top])[0][0]
    emb, _ = tiny_model.embed_spectra(spectra_to_batch([query, other]))  # type: ignore[attr-defined]
    refs = spectra_to_batch([query, other])
    # the top candidate's references: another compound's spectrum (its embedding made identical to the
    # query's, so only the peaks tell them apart), then the query's own spectrum
    unlike = LibraryEvidence.from_arrays([key], [query.ion_mode], emb[:1],
                                         encoder_hash=tiny_model.encoder_hash,  # type: ignore[attr-defined]
                                         peaks=Peaks.from_arrow(refs.slice(1, 1)))
    assert unlike.measure == "entropy" and (unlike.threshold, unlike.weight) == (ENTROPY_THRESHOLD, ENTROPY_WEIGHT)
    with pytest.raises(ValueError, match="query_peaks"):
        unlike.similarity(emb[:1], [query.ion_mode], np.array([0]), [key])
    query_peaks = unlike.query_peaks(Peaks.from_arrow(batch))
    expected = float(entropy_similarity(query_peaks, unlike.reference_peaks(np.array([0])),  # type: ignore[arg-type, misc]
                                        [0], [0])[0])
    assert expected < ENTROPY_THRESHOLD
    ranked = {r["smiles"]: r for r in rank_candidates(batch, cands, tiny_model, top_k=4, evidence=unlike).to_pylist()}
    assert ranked[top]["library_similarity"] == pytest.approx(expected, abs=1e-6)
    demoted = ranked[top]["cosine"] - ENTROPY_WEIGHT * (ENTROPY_THRESHOLD - expected)
    assert ranked[top]["score"] == pytest.approx(demoted, abs=1e-5)
    own = LibraryEvidence.from_arrays([key, key], [query.ion_mode] * 2, np.vstack([emb[1:], emb[1:]]),
                                      encoder_hash=tiny_model.encoder_hash,  # type: ignore[attr-defined]
                                      peaks=Peaks.from_arrow(spectra_to_batch([other, query])))
    again = {r["smiles"]: r for r in rank_candidates(batch, cands, tiny_model, top_k=4, evidence=own).to_pylist()}
    assert again[top]["library_similarity"] == pytest.approx(1.0, abs=1e-5)   # best of its two references
    assert again[top]["score"] == pytest.approx(again[top]["cosine"], abs=1e-6)
