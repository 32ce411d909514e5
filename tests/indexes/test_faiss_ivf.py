from __future__ import annotations

import numpy as np
import pytest
from vs_helpers import Embedded

from indexes.faiss_ivf import IndexPolicy, build_ivf, gpu_count, load_index, save_index, search_ivf
from indexes.ground_truth import exact_knn, knn_cpu, recall_at_k, topk_rows


def test_size_rule() -> None:
    policy = IndexPolicy(flat_max_rows=50_000, ivf_flat_max_bytes=2**30, max_nlist=4096)
    assert policy.kind_for(50_000, 256) == "flat"
    assert policy.kind_for(50_001, 256) == "ivf_flat"
    assert policy.kind_for(2**30 // (4 * 256) + 1, 256) == "ivf_pq"
    assert policy.nlist_for(100_000) == 2048  # 2^floor(log2(100000 / 39)) = 2^11
    assert policy.nlist_for(1_000) == 16 and policy.nlist_for(10**9) == 4096
    assert policy.pq_m_for(256) == 64 and policy.pq_m_for(100) == 25
    assert policy.n_probe_for(16, 1000) == 16
    assert IndexPolicy.from_dict(policy.to_dict()) == policy
    with pytest.raises(ValueError, match="unknown"):
        IndexPolicy.from_dict({"nlists": 3})


@pytest.mark.parametrize("kind", ["ivf_flat", "ivf_pq"])
def test_ivf_at_full_probe_matches_exact_and_round_trips_mmap(embedded: Embedded, kind: str, tmp_path) -> None:
    x = embedded.vectors
    q = x[::37] + np.float32(0.05)
    policy = IndexPolicy(min_nlist=8, max_nlist=8, pq_dims_per_code=2)
    index = build_ivf(x, kind, policy, use_gpu=False)  # type: ignore[arg-type]
    assert index.ntotal == x.shape[0]
    es, ei = exact_knn(q, x, 10)
    s, i = search_ivf(index, q, 10, n_probe=8)
    if kind == "ivf_flat":  # all lists probed: identical to exact search
        np.testing.assert_allclose(s, es, atol=1e-5)
        assert recall_at_k(i, ei, 10) > 0.99
    else:
        assert recall_at_k(i, ei, 10) > 0.5
    save_index(index, tmp_path / "p.faiss")
    loaded = load_index(tmp_path / "p.faiss", mmap=True)
    s2, i2 = search_ivf(loaded, q, 10, n_probe=8)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_allclose(s, s2)


def test_exact_knn_blocks_and_mask(embedded: Embedded) -> None:
    x = embedded.vectors
    q = x[:20]
    s, i = exact_knn(q, x, 5, block_rows=333)
    full = q @ x.T
    np.testing.assert_allclose(s, -np.sort(-full, axis=1)[:, :5], atol=1e-5)
    assert (i[:, 0] == np.arange(20)).all()
    mask = np.zeros(x.shape[0], bool)
    mask[100:103] = True
    s, i = exact_knn(q, x, 5, block_rows=64, mask=mask)
    assert set(i[0, :3].tolist()) == {100, 101, 102} and (i[:, 3:] == -1).all()


def test_knn_cpu_equals_faiss_knn_in_any_tiling(embedded: Embedded) -> None:
    """The torch matrix-product path gives faiss.knn's neighbours and scores, whatever the query tiles."""
    import faiss

    x = embedded.vectors
    q = np.ascontiguousarray(x[::7] + 0.01 * np.random.default_rng(0).standard_normal((len(x[::7]), x.shape[1])),
                             dtype=np.float32)
    fs, fi = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    fs, fi = topk_rows(fs, fi.astype(np.int64), 10)
    for tile in (x.shape[0] * 3, 1 << 26):  # 3 queries per tile, and all at once
        ts, ti = topk_rows(*knn_cpu(q, x, 10, tile_scores=tile), 10)
        np.testing.assert_allclose(ts, fs, atol=1e-5)
        assert recall_at_k(ti, fi, 10, found_scores=ts, true_scores=fs) == 1.0
        assert (ti[:, 0] == fi[:, 0]).mean() > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="no GPU")
def test_gpu_matches_cpu(embedded: Embedded) -> None:
    x = embedded.vectors
    q = x[::50]
    cs, ci = exact_knn(q, x, 10, use_gpu=False)
    gs, gi = exact_knn(q, x, 10, use_gpu=True)
    np.testing.assert_allclose(cs, gs, atol=1e-4)
    assert recall_at_k(gi, ci, 10) > 0.99
    policy = IndexPolicy(min_nlist=8, max_nlist=8)
    gpu_built = build_ivf(x, "ivf_flat", policy, use_gpu=True)
    s, i = search_ivf(gpu_built, q, 10, n_probe=8)
    np.testing.assert_allclose(s, cs, atol=1e-4)
    assert recall_at_k(i, ci, 10) > 0.99
