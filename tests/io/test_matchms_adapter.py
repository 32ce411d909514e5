"""matchms spectra in and out: a round trip keeps peaks and metadata; engine records read from a file and
the same file read by matchms agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.io.matchms_adapter import from_matchms, from_matchms_many, to_matchms
from engine.io.readers import read_file

MGF = Path(__file__).resolve().parents[1] / "data" / "massbank" / "massbank.mgf"


def test_round_trip_keeps_peaks_and_metadata() -> None:
    pytest.importorskip("matchms")
    ours = [s for s in read_file(MGF) if not isinstance(s, Exception)]
    back = [from_matchms(to_matchms(s)) for s in ours]
    for a, b in zip(ours, back, strict=True):
        np.testing.assert_array_equal(a.mz, b.mz)
        np.testing.assert_array_equal(a.intensity, b.intensity)
        for field in ("spectrum_id", "precursor_mz", "charge", "ion_mode", "adduct", "name", "smiles", "inchikey",
                      "formula"):
            assert getattr(a, field) == getattr(b, field), field


def test_matchms_reading_agrees_with_the_engine_reader() -> None:
    matchms_mgf = pytest.importorskip("matchms.importing")
    theirs = from_matchms_many(matchms_mgf.load_from_mgf(str(MGF)))
    ours = [s for s in read_file(MGF) if not isinstance(s, Exception)]
    assert len(theirs) == len(ours) > 0
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.mz, b.mz)
        assert a.precursor_mz == pytest.approx(b.precursor_mz) and a.ion_mode == b.ion_mode
