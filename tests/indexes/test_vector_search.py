from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from vs_helpers import DIM, Embedded, as_lists, assert_same_hits, brute_force

from engine.core.records import Tolerance
from indexes.faiss_ivf import IndexPolicy
from indexes.ground_truth import recall_at_k
from indexes.search import result_schema, search
from indexes.vector_index import VectorIndex, build_vector_index

POLICY = IndexPolicy(flat_max_rows=300, min_nlist=8, max_nlist=8, n_probe=8, target_partition_rows=800,
                     exact_window_rows=0)


@pytest.fixture(scope="module", params=["flat", "ivf_flat", "ivf_pq"])
def index(request: pytest.FixtureRequest, embedded: Embedded, tmp_path_factory: pytest.TempPathFactory
          ) -> VectorIndex:
    out = tmp_path_factory.mktemp(request.param)
    policy = replace(POLICY, force_kind=request.param, pq_dims_per_code=2, pq_nbits=4)
    build_vector_index(out, embedded.light(), embedded.batches(), dim=DIM, encoder_hash="e", table="spectra",
                       key_column="spectrum_id", mass_column="precursor_mz", table_rows=len(embedded),
                       policy=policy)
    return VectorIndex.open(out)


def _queries(emb: Embedded) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows = np.arange(0, len(emb), 17)
    rng = np.random.default_rng(3)
    q = emb.vectors[rows] + rng.normal(0, 0.05, (rows.shape[0], DIM)).astype(np.float32)
    return q, emb.mass[rows] * (1 + 2e-6), list(emb.ion_mode[rows])


def test_windows_modes_quality_match_brute_force(index: VectorIndex, embedded: Embedded) -> None:
    q, mass, modes = _queries(embedded)
    excluded = embedded.row_id[::2]   # every other row, the queries' own rows among them
    exactish = index.manifest.partitions[0].kind != "ivf_pq"
    cases = [
        ({"mass": mass, "tolerance": Tolerance(10, "ppm")}, {"mass": mass, "tol_ppm": 10}),
        ({"mass": mass, "tolerance": Tolerance(0.5, "Da"), "ion_mode": modes},
         {"mass": mass, "tol_da": 0.5, "ion_mode": modes}),
        ({"mass": mass, "tolerance": Tolerance(10, "ppm"), "min_quality": 0.9},
         {"mass": mass, "tol_ppm": 10, "min_quality": 0.9}),
        ({"ion_mode": "negative"}, {"ion_mode": ["negative"] * len(q)}),
        ({"min_quality": 0.95}, {"min_quality": 0.95}),
        ({}, {}),
        # rows left out (a library's decoys): the top 5 come from the other rows, windows or not
        ({"exclude_rows": excluded}, {"exclude_rows": excluded}),
        ({"exclude_rows": excluded, "min_quality": 0.9}, {"exclude_rows": excluded, "min_quality": 0.9}),
        ({"mass": mass, "tolerance": Tolerance(0.5, "Da"), "exclude_rows": excluded},
         {"mass": mass, "tol_da": 0.5, "exclude_rows": excluded}),
    ]
    for kwargs, bf_kwargs in cases:
        got = as_lists(search(index, q, top_k=5, **kwargs), len(q))
        want = brute_force(embedded, q, 5, **bf_kwargs)
        if exactish or "mass" in kwargs:  # narrow windows are searched exactly whatever the index kind
            assert_same_hits(got, want)
        else:
            found = np.array([[r for r, _ in g] + [-1] * (5 - len(g)) for g in got])
            true = np.array([[r for r, _ in w] + [-1] * (5 - len(w)) for w in want])
            assert recall_at_k(found, true, 5) > 0.8
        if "exclude_rows" in kwargs:
            hits = search(index, q, top_k=5, **kwargs).column("row_id").to_numpy()
            assert hits.size and not np.isin(hits, excluded).any()


def test_wide_windows_through_ivf(index: VectorIndex, embedded: Embedded) -> None:
    q, mass, _ = _queries(embedded)
    excluded = embedded.row_id[1::3]
    got = search(index, q, top_k=10, mass=mass, tolerance=Tolerance(150, "Da"), min_quality=0.5, n_probe=4,
                 exclude_rows=excluded)
    want = brute_force(embedded, q, 10, mass=mass, tol_da=150, min_quality=0.5, exclude_rows=excluded)
    lists = as_lists(got, len(q))
    found = np.array([[r for r, _ in g] + [-1] * (10 - len(g)) for g in lists])
    true = np.array([[r for r, _ in w] + [-1] * (10 - len(w)) for w in want])
    assert recall_at_k(found, true, 10) > 0.8
    # every hit satisfies the filters and carries its exact cosine
    pos = {int(r): i for i, r in enumerate(embedded.row_id)}
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    for qi, rid, score, m in zip(*(got.column(c).to_numpy() for c in
                                   ("query_index", "row_id", "score", "precursor_mz")), strict=True):
        i = pos[int(rid)]
        assert abs(m - mass[qi]) <= 150 and embedded.quality[i] >= 0.5 and rid not in set(excluded.tolist())
        assert score == pytest.approx(float(qn[qi] @ embedded.vectors[i]), abs=1e-5)


def test_exact_flag_and_result_table(index: VectorIndex, embedded: Embedded) -> None:
    q, mass, _ = _queries(embedded)
    res = search(index, q, top_k=3, exact=True)
    assert res.schema == result_schema("spectrum_id", "precursor_mz")
    assert_same_hits(as_lists(res, len(q)), brute_force(embedded, q, 3))
    assert res.column("rank").to_pylist()[:3] == [1, 2, 3]
    keys = dict(zip(embedded.row_id.tolist(), embedded.key, strict=True))
    assert all(keys[r] == k for r, k in zip(res.column("row_id").to_pylist(),
                                            res.column("spectrum_id").to_pylist(), strict=True))
    # a query without a mass matches nothing; a window needs both mass and tolerance
    none = search(index, q[:2], mass=[np.nan, np.nan], tolerance=Tolerance(10))
    assert none.num_rows == 0
    with pytest.raises(ValueError, match="tolerance"):
        search(index, q[:2], mass=mass[:2])
    with pytest.raises(ValueError, match="shape"):
        search(index, np.zeros((2, DIM + 1), np.float32))


def test_ivf_window_selector_exact_at_full_probe(embedded: Embedded, tmp_path: Path) -> None:
    from indexes.search import _ivf_window

    build_vector_index(tmp_path, embedded.light(), embedded.batches(), dim=DIM, encoder_hash="e",
                       table="spectra", key_column="spectrum_id", mass_column="precursor_mz",
                       table_rows=len(embedded), policy=replace(POLICY, force_kind="ivf_flat"))
    part = VectorIndex.open(tmp_path).partition(0)
    q = embedded.vectors[:1]
    qual = part.quality >= 0.8
    s, i = _ivf_window(part, q, 100, 300, 10, 8, qual)
    scores = (part.vectors[100:300] @ q[0]).astype(np.float32)
    scores[~qual[100:300]] = -np.inf
    best = np.argsort(-scores)[:10] + 100
    np.testing.assert_allclose(s[0], np.sort(scores)[::-1][:10], atol=1e-5)
    assert set(i[0].tolist()) == set(best.tolist())


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq"])
def test_large_top_k_probes_enough_lists(embedded: Embedded, tmp_path: Path, kind: str) -> None:
    """A top-k larger than the probed lists hold still returns k hits (the probe count grows with k)."""
    policy = replace(POLICY, force_kind=kind, min_nlist=32, max_nlist=32, n_probe=1, pq_dims_per_code=2, pq_nbits=4)
    build_vector_index(tmp_path, embedded.light(), embedded.batches(), dim=DIM, encoder_hash="e", table="spectra",
                       key_column="spectrum_id", mass_column="precursor_mz", table_rows=len(embedded), policy=policy)
    index = VectorIndex.open(tmp_path)
    assert all(p.nlist == 32 for p in index.manifest.partitions if p.n_rows)
    q, _, modes = _queries(embedded)
    k = 400
    hits = search(index, q, top_k=k, ion_mode=modes)
    per_query = np.bincount(hits.column("query_index").to_numpy(), minlength=len(q))
    available = np.array([(embedded.ion_mode == m).sum() for m in modes])
    np.testing.assert_array_equal(per_query, np.minimum(k, available))
