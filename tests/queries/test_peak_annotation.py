"""Per-peak fragment annotation: the same explanations (and explained share) as fragment scoring uses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.core.peaks import Peaks
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.jobs.report import build_report
from engine.models.encoders.spectrum import preprocess_flat
from engine.models.model import model_pipeline
from engine.queries.fragments import FragmentScorer
from engine.queries.peak_annotation import annotate_peaks, annotate_spectrum

DECOYS = ["CC(=O)Oc1ccccc1C(=O)O", "c1ccc2c(c1)cccc2O", "CCCCCCCCCCCCCCCC(=O)O"]


def _annotated(sample_spectra: list[Spectrum]) -> list[Spectrum]:
    return [s for s in sample_spectra if s.smiles and s.precursor_mz][:12]


def test_annotation_matches_fragment_evidence(sample_spectra: list[Spectrum]) -> None:
    scorer = FragmentScorer()
    spectra = _annotated(sample_spectra)
    peaks = preprocess_flat(Peaks.from_arrow(spectra_to_batch(spectra)), model_pipeline())
    starts = peaks.offsets
    explained_any = 0
    for i, s in enumerate(spectra):
        mz, inten = peaks.mz[starts[i]:starts[i + 1]], peaks.intensity[starts[i]:starts[i + 1]]
        for smiles in [s.smiles, *DECOYS]:
            assert smiles is not None
            evidence = scorer.evidence(mz, inten, s.precursor_mz, s.ion_mode, s.adduct, smiles)
            note = annotate_peaks(scorer, mz, inten, s.precursor_mz, s.ion_mode, s.adduct, smiles)
            assert note is not None
            assert note.explained_share == evidence.explained_share
            hit = note.explained
            explained_any += int(hit.sum())
            tol = scorer.settings.tolerance_at(note.mz[hit])
            assert np.all(np.abs(note.ion_mz[hit] - note.mz[hit]) <= tol + 1e-12)
            assert np.all(np.isin(note.steps[hit], [0, 1, 2])) and np.all(np.abs(note.shift[hit]) <= 2)
            assert all(note.carrier[k] in {"+H", "-H", "+Na", "+e", "-e"} for k in np.flatnonzero(hit))
            assert np.all(note.steps[~hit] == -1) and np.all(np.isnan(note.fragment_mass[~hit]))
    assert explained_any > 0
    assert annotate_peaks(scorer, mz, inten, 100.0, "positive", None, "C1CC(broken") is None


def test_annotate_spectrum_keeps_raw_intensities(sample_spectra: list[Spectrum]) -> None:
    s = _annotated(sample_spectra)[0]
    note = annotate_spectrum(FragmentScorer(), s, str(s.smiles))
    assert note is not None
    at = np.searchsorted(s.mz, note.mz)
    np.testing.assert_array_equal(s.mz[at], note.mz)
    np.testing.assert_allclose(note.intensity, s.intensity[at])


def test_report_of_a_ranking_has_fragment_plots(sample_spectra: list[Spectrum]) -> None:
    spectra = _annotated(sample_spectra)[:3]
    results = pa.Table.from_pylist([{"query_id": s.spectrum_id, "rank": 1, "score": 0.9, "smiles": s.smiles,
                                     "inchikey": s.inchikey, "explained_share": 0.5} for s in spectra]
                                   + [{"query_id": "absent", "rank": 1, "score": 0.1, "smiles": "CCO",
                                       "inchikey": None, "explained_share": 0.0}])
    page = build_report(results, queries={s.spectrum_id: s for s in spectra}, max_plots=10)
    assert page.count("alt='fragment plot") == 3
    assert "1 top candidates not plotted" in page
