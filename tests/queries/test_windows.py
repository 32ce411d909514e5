"""Window enumeration returns exactly the brute-force set of in-window rows with exact cosines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.core.records import Tolerance
from engine.queries.windows import window_pairs
from indexes.faiss_ivf import IndexPolicy
from indexes.vector_index import VectorIndex, add_to_vector_index, build_vector_index


def _light(rows: np.ndarray, mass: np.ndarray, modes: np.ndarray, quality: np.ndarray) -> pa.Table:
    return pa.table({"row_id": pa.array(rows), "key": pa.array([f"s{r}" for r in rows]),
                     "mass": pa.array(mass), "ion_mode": pa.array(modes.tolist()),
                     "quality": pa.array(quality.astype(np.float32))})


@pytest.mark.parametrize("kind", ["flat", "ivf_flat"])
def test_window_pairs_match_brute_force(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    n, dim = 3000, 16
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    mass = rng.uniform(100, 600, n)
    mass[:50] = 300.0 + rng.uniform(-0.002, 0.002, 50)  # a crowded window
    modes = rng.choice(np.array(["positive", "negative"], dtype=object), n)
    quality = rng.uniform(0, 1, n)
    rows = np.arange(n, dtype=np.int64) * 3 + 7
    base = 2500  # the rest is appended later: the unsorted tail

    def batches() -> object:
        yield pa.record_batch([pa.array(rows[:base]),
                               pa.FixedSizeListArray.from_arrays(pa.array(vecs[:base].reshape(-1)), dim)],
                              names=["row_id", "embedding"])

    policy = IndexPolicy(force_kind=kind, min_nlist=4) if kind != "flat" else IndexPolicy()
    build_vector_index(tmp_path, _light(rows[:base], mass[:base], modes[:base], quality[:base]), batches,
                       dim=dim, encoder_hash="h", table="spectra", key_column="spectrum_id",
                       mass_column="precursor_mz", table_rows=base, policy=policy)
    add_to_vector_index(tmp_path, _light(rows[base:], mass[base:], modes[base:], quality[base:]), vecs[base:],
                        table_rows=n)
    index = VectorIndex.open(tmp_path)
    q = vecs[rng.choice(n, 40)] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q_mass = np.r_[300.0, mass[rng.choice(n, 38)], np.nan]
    q_modes = ["positive", *rng.choice(["positive", "negative"], 38).tolist(), "positive"]
    tol = Tolerance(20, "ppm")
    for min_quality in (None, 0.5):
        qi, row_id, cos = window_pairs(index, q, q_mass, q_modes, tol, min_quality=min_quality)
        got = {(int(a), int(b)): c for a, b, c in zip(qi, row_id, cos, strict=True)}
        want = {}
        for j in range(len(q)):
            lo, hi = tol.window(q_mass[j]) if np.isfinite(q_mass[j]) else (np.inf, -np.inf)
            ok = (mass >= lo) & (mass <= hi) & (modes == q_modes[j])
            if min_quality is not None:
                ok &= quality >= min_quality
            for i in np.flatnonzero(ok):
                want[(j, int(rows[i]))] = float(q[j] @ vecs[i])
        assert set(got) == set(want)
        assert len(want) > 20  # the crowded window is exercised
        if min_quality is None:
            assert any(r >= rows[base] for _, r in want)  # and the unsorted tail
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-5)
