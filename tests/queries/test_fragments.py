"""In-silico fragmentation and the explained-share score (engine.queries.fragments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core.peaks import Peaks
from engine.core.schema import spectra_to_batch
from engine.queries.fragments import (
    HYDROGEN,
    PROTON,
    BondPropensities,
    FragmentScorer,
    FragmentSettings,
    carries_sodium,
    fragment_smiles,
    ion_table,
    load_bond_propensities,
    predicted_recall,
)
from engine.queries.rank import RankReport, rank_candidates

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "model"
C, H, OX = 12.0, HYDROGEN, 15.99491461957


def _has(masses: np.ndarray, value: float) -> bool:
    return bool(np.any(np.abs(masses - value) < 1e-6))


def test_chain_fragments_of_ethanol() -> None:
    frags = fragment_smiles("CCO", FragmentSettings())
    assert frags is not None and not frags.charged
    steps = dict(zip(np.round(frags.masses, 4).tolist(), frags.steps.tolist(), strict=True))
    assert steps[round(2 * C + 6 * H + OX, 4)] == 0                           # the molecule itself
    for one_cut in (C + 3 * H, C + 3 * H + OX, 2 * C + 5 * H, OX + H):      # CH3 | CH2OH, C2H5 | OH
        assert steps[round(one_cut, 4)] == 1
    assert steps[round(C + 2 * H, 4)] == 2                                 # the middle CH2 needs two cuts


def test_a_ring_opens_only_with_two_cuts() -> None:
    one = fragment_smiles("c1ccccc1", FragmentSettings(max_steps=1))
    assert one is not None
    # one step cuts two ring bonds: CH, C2H2 ... C5H5 pieces; never a piece heavier than C5H5
    for k in range(1, 6):
        assert _has(one.masses, k * (C + H))
    assert one.masses.max() == pytest.approx(6 * (C + H))   # only the intact ring is heavier
    assert (one.steps[one.masses < 6 * C] == 1).all()


def test_ion_table_carriers() -> None:
    frags = fragment_smiles("CCO", FragmentSettings())
    assert frags is not None
    s = FragmentSettings(max_shift=0)
    pos, w = ion_table(frags, "positive", carries_sodium("[M+H]+"), s)
    assert _has(pos, 2 * C + 6 * H + OX + PROTON) and np.all(np.diff(pos) >= 0) and w.max() == 1.0
    neg, _ = ion_table(frags, "negative", carries_sodium("[M-H]-"), s)
    assert _has(neg, 2 * C + 6 * H + OX - PROTON)
    sodium, _ = ion_table(frags, "positive", carries_sodium("[M+Na]+"), s)
    assert sodium.shape[0] == 2 * pos.shape[0]
    shifted, ws = ion_table(frags, "positive", carries_sodium(None), FragmentSettings(max_shift=1, shift_decay=0.5))
    assert _has(shifted, C + 3 * H - H + PROTON)
    assert ws[np.argmin(np.abs(shifted - (C + 3 * H - H + PROTON)))] == pytest.approx(0.5)


def test_explained_share_of_a_built_spectrum() -> None:
    scorer = FragmentScorer.plain(FragmentSettings(mz_power=0.0))
    precursor = 2 * C + 6 * H + OX + PROTON
    explained = np.array([C + 3 * H + OX + PROTON, 2 * C + 5 * H + PROTON])   # CH2OH+ (as CH3OH-H) and C2H5+
    mz = np.sort(np.concatenate([explained, [20.5], [precursor]]))
    inten = np.where(np.isin(mz, explained), 1.0, 0.5)
    ev = scorer.evidence(mz, inten, precursor, "positive", "[M+H]+", "CCO")
    # the precursor is left out; the two explained peaks carry 2.0 of the 2.5 that remains
    assert ev.explained_share == pytest.approx(2.0 / 2.5)
    w = scorer.weights
    assert ev.score == pytest.approx(w.share * ev.explained_share + w.recall * ev.predicted_recall
                                     - w.size * np.log(ev.n_fragments))
    assert np.isnan(scorer.evidence(mz, inten, precursor, "positive", None, "not a smiles").score)
    empty = scorer.evidence(mz[:0], inten[:0], precursor, "positive", None, "CCO")
    assert empty.explained_share == 0.0 and empty.predicted_recall == 0.0
    assert len(scorer) == 2      # each SMILES fragmented once


def test_predicted_recall_counts_likely_fragments_the_spectrum_shows() -> None:
    frags = fragment_smiles("CCCCCCO", FragmentSettings(max_steps=1))   # hexanol: one-step pieces
    assert frags is not None
    one = frags.masses[frags.steps == 1]
    ions = one + PROTON
    lower = ions[(ions >= 50) & (ions < 100)]
    settings = FragmentSettings()
    everything = predicted_recall(frags, np.sort(lower), "positive", 200.0, settings)
    assert everything == pytest.approx(1.0)
    half = predicted_recall(frags, np.sort(lower)[: lower.shape[0] // 2], "positive", 200.0, settings)
    assert 0.0 < half < 1.0
    assert predicted_recall(frags, np.array([500.5]), "positive", 600.0, settings) == 0.0


def test_bundled_bond_propensities_favour_labile_bonds() -> None:
    table = load_bond_propensities()
    assert table.provenance["spectra"] > 1000 and "val" not in table.provenance["data"].split("split")[0]
    # an amide / amine C-N bond breaks far more often than an aromatic ring bond
    assert table.log_p["C-N:1"] > table.log_p["c-c:1.5:r"]
    assert table.of(["no-such-type"])[0] == table.default_log_p
    with pytest.raises(ValueError, match="format"):
        BondPropensities.from_dict({"format": "other"})
    weighted = fragment_smiles("CC(=O)NCc1ccccc1", FragmentSettings(), table)
    assert weighted is not None and np.all(weighted.log_weight[weighted.steps > 0] < 0)


def test_large_ring_systems_stay_bounded() -> None:
    # a steroid-glycoside sized molecule: many ring units, the cleavage-set cap applies
    smiles = "C[C@]12CC[C@H](O[C@@H]3O[C@H](CO)[C@@H](O)[C@H](O)[C@H]3O)CC1=CC[C@@H]1[C@@H]2CC[C@]2(C)" \
             "[C@@H](C(C)=O)CC[C@@H]12"
    frags = fragment_smiles(smiles, FragmentSettings())
    assert frags is not None and frags.masses.shape[0] > 100 and set(frags.steps.tolist()) == {0, 1, 2}


def test_true_structures_explain_their_spectra_better_than_near_mass_decoys() -> None:
    """Real MassBank spectra (fixture): each true structure against the 10 fixture candidates nearest
    in mass; true structures explain clearly more of their spectra than the decoys do."""
    from engine.models.encoders.spectrum import preprocess_flat
    from engine.models.model import model_pipeline

    spectra = pq.read_table(FIXTURES / "massbank_tiny.parquet")
    spectra = spectra.filter(pa.array([m is not None for m in spectra.column("precursor_mz").to_pylist()]))
    cands = pq.read_table(FIXTURES / "candidates_tiny.parquet").to_pylist()
    masses = np.array([c["monoisotopic_mass"] for c in cands])
    peaks = preprocess_flat(Peaks.from_arrow(spectra), model_pipeline())
    scorer = FragmentScorer()
    rows = spectra.select(["smiles", "inchikey", "exact_mass"]).to_pylist()
    query, smiles, is_true = [], [], []
    for i, r in enumerate(rows):
        near = np.argsort(np.abs(masses - r["exact_mass"]))[:11]
        decoys = [cands[j]["smiles"] for j in near if cands[j]["inchikey"] != r["inchikey"]][:10]
        for smi, truth in [(r["smiles"], True)] + [(d, False) for d in decoys]:
            query.append(i)
            smiles.append(smi)
            is_true.append(truth)
    _, share = scorer.score_pairs(peaks, spectra.column("ion_mode").to_pylist(),
                                  spectra.column("adduct").to_pylist(), np.asarray(query), smiles)
    truth = np.asarray(is_true)
    assert np.nanmean(share[truth]) > np.nanmean(share[~truth]) + 0.2, (np.nanmean(share[truth]),
                                                                       np.nanmean(share[~truth]))


def test_compiled_pair_scores_equal_the_per_pair_evidence(monkeypatch: pytest.MonkeyPatch) -> None:
    """score_pairs (compiled kernel over packed pairs) gives what evidence() computes pair by pair with
    NumPy, across chunk boundaries, modes, sodium adducts, empty spectra and unparsable SMILES."""
    import engine.queries.fragments as fragments_module
    from engine.models.encoders.spectrum import preprocess_flat
    from engine.models.model import model_pipeline

    spectra = pq.read_table(FIXTURES / "massbank_tiny.parquet")
    spectra = spectra.filter(pa.array([m is not None for m in spectra.column("precursor_mz").to_pylist()]))
    peaks = preprocess_flat(Peaks.from_arrow(spectra), model_pipeline())
    cands = [c["smiles"] for c in pq.read_table(FIXTURES / "candidates_tiny.parquet").to_pylist()][:40]
    cands += ["not a smiles", "[Na+].[Cl-]", "C"]
    rng = np.random.default_rng(0)
    query = rng.integers(0, spectra.num_rows, 600)
    smiles = [cands[k] for k in rng.integers(0, len(cands), 600)]
    modes = spectra.column("ion_mode").to_pylist()
    adducts = [a if k % 3 else "[M+Na]+" for k, a in enumerate(spectra.column("adduct").to_pylist())]
    modes[0] = None                                                          # defaults to positive
    scorer = FragmentScorer()
    monkeypatch.setattr(fragments_module, "PAIR_CHUNK", 97)                 # several kernel calls
    score, share = scorer.score_pairs(peaks, modes, adducts, query, smiles)
    starts = peaks.offsets
    for k, (q, smi) in enumerate(zip(query.tolist(), smiles, strict=True)):
        a, b = starts[q], starts[q + 1]
        ev = scorer.evidence(peaks.mz[a:b], peaks.intensity[a:b], float(peaks.precursor_mz[q]), modes[q],
                             adducts[q], smi)
        assert np.isnan(score[k]) == np.isnan(ev.score), smi
        if not np.isnan(ev.score):
            assert score[k] == pytest.approx(ev.score, abs=1e-12)
            assert share[k] == pytest.approx(ev.explained_share, abs=1e-12)
    assert np.isfinite(score).sum() > 500 and (share[np.isfinite(share)] > 0).sum() > 100
    empty = scorer.score_pairs(peaks, modes, adducts, np.zeros(0, np.int64), [])
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_rank_candidates_with_fragment_scores(tiny_model: object, sample_spectra: list) -> None:
    queries = [s for s in sample_spectra if s.precursor_mz][:2]
    qid = queries[0].spectrum_id
    cands = pa.table({"query_id": [qid, qid, qid], "smiles": ["CCO", "CCN", "not a smiles"]})
    report = RankReport()
    scorer = FragmentScorer()
    plain = rank_candidates(spectra_to_batch(queries), cands, tiny_model, top_k=5)
    ranked = rank_candidates(spectra_to_batch(queries), cands, tiny_model, top_k=5, report=report, fragments=scorer)
    assert plain.column("fragment_score").null_count == plain.num_rows
    rows = ranked.to_pylist()
    assert len(rows) == 2 and report.candidates_fragmented == 2 and report.invalid_smiles == 1
    for r in rows:
        assert 0.0 <= r["explained_share"] <= 1.0
        assert r["score"] == pytest.approx(r["cosine"] + r["fragment_score"], abs=1e-5)
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["score"] >= rows[1]["score"]


def test_fragmenting_in_worker_processes_matches_one_process() -> None:
    """warm(processes=2), and score_pairs of a scorer with processes=2, give what one process computes."""
    from engine.models.encoders.spectrum import preprocess_flat
    from engine.models.model import model_pipeline

    smiles = [f"{'C' * n}O{'C' * m}" for n in range(1, 41) for m in range(0, 30)]   # 1,200 ethers / alcohols
    scorer = FragmentScorer()
    scorer.warm(smiles, processes=2)
    assert len(scorer) == len(set(smiles))
    for smi in smiles[::97]:
        direct = fragment_smiles(smi, scorer.settings, scorer.propensities)
        cached = scorer.fragments(smi)
        assert direct is not None and cached is not None
        np.testing.assert_allclose(cached.masses, direct.masses)
        np.testing.assert_allclose(cached.log_weight, direct.log_weight)
    spectra = pq.read_table(FIXTURES / "massbank_tiny.parquet").slice(0, 1)
    peaks = preprocess_flat(Peaks.from_arrow(spectra), model_pipeline())
    modes, adducts = spectra.column("ion_mode").to_pylist(), spectra.column("adduct").to_pylist()
    query = np.zeros(len(smiles), np.int64)
    pooled = FragmentScorer(processes=2)
    score, share = pooled.score_pairs(peaks, modes, adducts, query, smiles)
    assert len(pooled) == len(smiles)
    expected = FragmentScorer().score_pairs(peaks, modes, adducts, query, smiles)
    np.testing.assert_array_equal(score, expected[0])
    np.testing.assert_array_equal(share, expected[1])


@pytest.mark.parametrize("smiles", ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O",
                                    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O", "CC(=O)[O-].[NH4+]"])
def test_compiled_piece_masses_match_the_numpy_reference(smiles: str) -> None:
    from rdkit import Chem

    from engine.queries.fragments import _components, atom_table, cleavage_sets, piece_masses

    masses, ends, ring_bonds, rings, _ = atom_table(Chem.MolFromSmiles(smiles))
    cut, _ = cleavage_sets(ends.shape[0], ring_bonds, rings, 2)
    n_sets, n_atoms = cut.shape[0], masses.shape[0]
    labels = _components(n_atoms, ends, cut)
    expected = np.zeros((n_sets, n_atoms))
    np.add.at(expected, (np.repeat(np.arange(n_sets), n_atoms), labels.ravel()), np.tile(masses, n_sets))
    np.testing.assert_allclose(piece_masses(masses, ends, cut), expected, rtol=0, atol=1e-9)
