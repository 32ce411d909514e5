"""Library structure fingerprints are cached beside the library and only reused for the same rows and SMILES."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from query_helpers import write_mgf

from engine.core.records import Spectrum
from engine.jobs.library import build_library
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from engine.queries.references import FINGERPRINT_CACHE, References
from indexes.library import Library


def _refs(path: Path) -> References:
    return References(Library.open(path), preload=True)


def test_cache_written_then_reused_and_invalidated(tmp_path: Path, sample_spectra: list[Spectrum],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    build_library([write_mgf(sample_spectra[:20], tmp_path / "a.mgf")], lib, FixedSpectrumEmbedder(dim=16),
                  decoys=False,
                  progress=False)
    first = _refs(lib)
    rows = np.sort(Library.open(lib).light().column("row_id").to_numpy())
    fps = first.structure_fingerprints(rows)
    assert (lib / FINGERPRINT_CACHE).exists() and fps.shape == (20, 256) and fps.any()

    def refuse(self: References, smiles: list[str]) -> np.ndarray:
        raise AssertionError("fingerprints recomputed although cached")

    with monkeypatch.context() as m:
        m.setattr(References, "_fingerprints", refuse)
        assert np.array_equal(_refs(lib).structure_fingerprints(rows), fps)

    # rows added: the cache no longer matches and is recomputed (and rewritten) for all rows
    build_library([write_mgf(sample_spectra[20:25], tmp_path / "b.mgf")], lib, FixedSpectrumEmbedder(dim=16),
                  decoys=False,
                  progress=False)
    grown = _refs(lib)
    all_rows = np.sort(Library.open(lib).light().column("row_id").to_numpy())
    again = grown.structure_fingerprints(all_rows)
    assert again.shape == (25, 256)
    assert np.array_equal(grown.structure_fingerprints(rows), fps)
    with monkeypatch.context() as m:
        m.setattr(References, "_fingerprints", refuse)
        assert np.array_equal(_refs(lib).structure_fingerprints(all_rows), again)

    # a damaged cache file is ignored, not trusted
    (lib / FINGERPRINT_CACHE).write_bytes(b"not an npz")
    assert np.array_equal(_refs(lib).structure_fingerprints(all_rows), again)


def test_cache_does_not_change_the_job_fingerprint(tmp_path: Path, sample_spectra: list[Spectrum]) -> None:
    from engine.jobs.rerun import digest_files

    lib = tmp_path / "lib"
    build_library([write_mgf(sample_spectra[:10], tmp_path / "a.mgf")], lib, FixedSpectrumEmbedder(dim=16),
                  decoys=False,
                  progress=False)
    before = digest_files([lib])
    _refs(lib).prepare()
    assert (lib / FINGERPRINT_CACHE).exists()
    assert digest_files([lib]) == before
