from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from vs_helpers import DIM, Embedded, as_lists, assert_same_hits, brute_force

from engine.core.errors import IncompatibleArtifactError
from engine.core.records import Tolerance
from indexes.faiss_ivf import IndexPolicy
from indexes.manifest import IndexManifest
from indexes.search import search
from indexes.vector_index import VectorIndex, add_to_vector_index, build_vector_index, retrain_vector_index

POLICY = IndexPolicy(flat_max_rows=300, min_nlist=4, max_nlist=8, n_probe=2, target_partition_rows=800)


def build(emb: Embedded, out: Path, sel: slice | np.ndarray = slice(None), policy: IndexPolicy = POLICY,
          table_rows: int | None = None) -> IndexManifest:
    light = emb.light(sel)
    return build_vector_index(out, light, emb.batches(sel), dim=DIM, encoder_hash="enc-a", table="spectra",
                              key_column="spectrum_id", mass_column="precursor_mz",
                              table_rows=light.num_rows if table_rows is None else table_rows, policy=policy)


def test_build_partitions_and_manifest(embedded: Embedded, tmp_path: Path) -> None:
    man = build(embedded, tmp_path)
    assert man.n_rows == len(embedded) == 2140
    kinds = {p.name: p.kind for p in man.partitions}
    assert {p.ion_mode for p in man.partitions} == {"positive", "negative"}
    assert all(p.n_rows <= 800 for p in man.partitions)
    assert "ivf_flat" in kinds.values()
    loaded = IndexManifest.load(tmp_path)
    assert loaded.to_dict() == man.to_dict()
    # every file named by the manifest exists, nothing else with a generation suffix
    files = {f for p in man.partitions for f in p.files}
    assert files == {p.name for p in tmp_path.iterdir() if ".g" in p.name}
    index = VectorIndex.open(tmp_path, dim=DIM, encoder_hash="enc-a", table_rows=len(embedded))
    part = index.partition(0)
    assert isinstance(part.vectors, np.memmap)  # memory-mapped, not read
    assert (np.diff(part.mass) >= 0).all()  # rows sorted by mass


def test_manifest_mismatch_refused(embedded: Embedded, tmp_path: Path) -> None:
    build(embedded, tmp_path)
    with pytest.raises(IncompatibleArtifactError, match="dimension"):
        VectorIndex.open(tmp_path, dim=DIM * 2)
    with pytest.raises(IncompatibleArtifactError, match="encoder"):
        VectorIndex.open(tmp_path, encoder_hash="enc-b")
    with pytest.raises(IncompatibleArtifactError, match="table rows"):
        VectorIndex.open(tmp_path, table_rows=len(embedded) + 1)
    man = IndexManifest.load(tmp_path)
    man.schema_version = 99
    man.save(tmp_path)
    with pytest.raises(IncompatibleArtifactError, match="schema version"):
        VectorIndex.open(tmp_path)
    with pytest.raises(IncompatibleArtifactError, match="manifest"):
        VectorIndex.open(tmp_path / "nowhere")


def test_flat_and_ivf_identical_at_full_probe(embedded: Embedded, tmp_path: Path) -> None:
    build(embedded, tmp_path / "flat", policy=replace(POLICY, flat_max_rows=10**6))
    build(embedded, tmp_path / "ivf", policy=replace(POLICY, flat_max_rows=0))
    flat, ivf = VectorIndex.open(tmp_path / "flat"), VectorIndex.open(tmp_path / "ivf")
    assert {p.kind for p in ivf.manifest.partitions} == {"ivf_flat"}
    q = embedded.vectors[::41]
    a = as_lists(search(flat, q, top_k=10), len(q))
    b = as_lists(search(ivf, q, top_k=10, n_probe=8), len(q))
    assert_same_hits(b, a)
    assert_same_hits(a, brute_force(embedded, q, 10))


def test_incremental_add_then_retrain(embedded: Embedded, tmp_path: Path) -> None:
    n = len(embedded)
    first = np.arange(n) < 1500
    build(embedded, tmp_path, np.flatnonzero(first), policy=replace(POLICY, flat_max_rows=600))
    before = IndexManifest.load(tmp_path)
    rest = np.flatnonzero(~first)
    man = add_to_vector_index(tmp_path, embedded.light(rest), embedded.vectors[rest], table_rows=n)
    assert man.n_rows == n and man.max_row_id == int(embedded.row_id.max())
    assert [p.trained_rows for p in man.partitions] == [p.trained_rows for p in before.partitions]
    assert sum(p.n_rows - p.n_sorted for p in man.partitions) == len(rest)
    index = VectorIndex.open(tmp_path, table_rows=n)
    q = embedded.vectors[rest[::23]]
    got = as_lists(search(index, q, top_k=5, exact=True), len(q))
    assert_same_hits(got, brute_force(embedded, q, 5))
    # windows over appended rows are found through the unsorted tail
    mass = embedded.mass[rest[::23]]
    got = as_lists(search(index, q, top_k=5, mass=mass, tolerance=_ppm(20)), len(q))
    assert_same_hits(got, brute_force(embedded, q, 5, mass=mass, tol_ppm=20))
    # a flat partition that crossed the threshold is stale; retrain makes it IVF and sorted
    stale = man.stale()
    assert len(stale) == len(man.partitions)
    assert all("call for ivf_flat" in why for why in stale.values())
    done = retrain_vector_index(tmp_path)
    assert sorted(done) == sorted(stale)
    after = IndexManifest.load(tmp_path)
    assert after.stale() == {} and all(p.n_sorted == p.n_rows for p in after.partitions)
    assert {p.kind for p in after.partitions} == {"ivf_flat"}
    index = VectorIndex.open(tmp_path, table_rows=n)
    got = as_lists(search(index, q, top_k=5, mass=mass, tolerance=_ppm(20)), len(q))
    assert_same_hits(got, brute_force(embedded, q, 5, mass=mass, tol_ppm=20))


def test_add_new_ion_mode(embedded: Embedded, tmp_path: Path) -> None:
    pos = np.flatnonzero(embedded.ion_mode == "positive")
    neg = np.flatnonzero(embedded.ion_mode == "negative")
    build(embedded, tmp_path, pos, table_rows=len(pos))
    man = add_to_vector_index(tmp_path, embedded.light(neg), embedded.vectors[neg], table_rows=len(embedded))
    assert "negative" in man.scheme.edges
    q = embedded.vectors[neg[::20]]
    got = as_lists(search(VectorIndex.open(tmp_path), q, top_k=3, ion_mode="negative"), len(q))
    assert_same_hits(got, brute_force(embedded, q, 3, ion_mode=["negative"] * len(q)))


def _ppm(value: float) -> Tolerance:
    return Tolerance(value, "ppm")


def test_shard_sets_partition_the_index_and_merge_to_the_whole(embedded: Embedded, tmp_path: Path) -> None:
    from indexes.ground_truth import merge_topk
    from indexes.shards import plan_shard_sets, route

    man = build(embedded, tmp_path, policy=replace(POLICY, target_partition_rows=300))
    sets = plan_shard_sets(man, 3)
    names = [n for s in sets for n in s.partitions]
    assert sorted(names) == sorted(p.name for p in man.partitions)  # each partition in exactly one set
    assert {s.ion_mode for s in sets} == {"positive", "negative"} and len(sets) >= 3
    assert sum(s.rows for s in sets) == len(embedded)
    q = embedded.vectors[::50]
    whole = search(VectorIndex.open(tmp_path), q, top_k=5)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.full((len(q), 0), -1, np.int64)
    for s in sets:
        part = search(VectorIndex.open(tmp_path, partitions=s.partitions), q, top_k=5)
        sc = np.full((len(q), 5), -np.inf, np.float32)
        ids = np.full((len(q), 5), -1, np.int64)
        sc[part["query_index"].to_numpy(), part["rank"].to_numpy() - 1] = part["score"].to_numpy()
        ids[part["query_index"].to_numpy(), part["rank"].to_numpy() - 1] = part["row_id"].to_numpy()
        best_s, best_i = merge_topk(best_s, best_i, sc, ids, 5)
    want = as_lists(whole, len(q))
    np.testing.assert_allclose(best_s, [[s for _, s in w] for w in want], atol=1e-6)
    first = sets[0]
    assert route(sets, first.ion_mode, first.mass_lo, first.mass_lo + 1e-3) == [0]


PQ = replace(POLICY, force_kind="ivf_pq", pq_dims_per_code=2, pq_nbits=4, n_probe=8, code_refine_factor=40)


def _codes_in_step(index: VectorIndex, tolerance: float) -> None:
    for i, entry in enumerate(index.manifest.partitions):
        part = index.partition(i)
        assert entry.refine_codes and part.codes is not None
        assert part.codes.ntotal == entry.n_rows == part.vectors.shape[0]
        # row i of the codes decodes to row i of the vectors, within the 8-bit error (rows appended
        # after training may be clipped to the trained ranges)
        vectors = np.asarray(part.vectors)
        decoded = part.codes.reconstruct_batch(np.arange(entry.n_rows, dtype=np.int64))
        assert np.abs(np.einsum("ij,ij->i", decoded, vectors) - 1).max() < tolerance


def test_ivf_pq_scalar_codes_follow_adds_and_retrains(embedded: Embedded, tmp_path: Path) -> None:
    n = len(embedded)
    first = np.arange(n) < 1500
    man = build(embedded, tmp_path, np.flatnonzero(first), policy=PQ)
    assert {f for p in man.partitions for f in p.files} == {p.name for p in tmp_path.iterdir() if ".g" in p.name}
    assert all(p.file("codes.faiss") in p.files for p in man.partitions)
    _codes_in_step(VectorIndex.open(tmp_path), 0.01)
    rest = np.flatnonzero(~first)
    add_to_vector_index(tmp_path, embedded.light(rest), embedded.vectors[rest], table_rows=n)
    _codes_in_step(VectorIndex.open(tmp_path), 0.1)
    retrain_vector_index(tmp_path, [p.name for p in man.partitions])
    _codes_in_step(VectorIndex.open(tmp_path), 0.01)


def test_ivf_pq_scalar_codes_shortlist_keeps_exact_scores(embedded: Embedded, tmp_path: Path) -> None:
    """With codes, IVF-PQ hits are at least as good as with the float re-score alone, and their scores
    are still the exact cosines of the rows returned; an index built without codes still searches."""
    with_codes, without = tmp_path / "codes", tmp_path / "plain"
    build(embedded, with_codes, policy=PQ)
    build(embedded, without, policy=replace(PQ, refine_codes=False))
    assert not any(p.refine_codes for p in IndexManifest.load(without).partitions)
    rng = np.random.default_rng(5)
    q = embedded.vectors[::11] + rng.normal(0, 0.05, (len(embedded.vectors[::11]), DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    want = brute_force(embedded, q, 5)
    true = np.array([[r for r, _ in w] for w in want])
    recall = {}
    for name, path in (("codes", with_codes), ("plain", without)):
        index = VectorIndex.open(path)
        assert (index.partition(0).codes is not None) == (name == "codes")
        res = search(index, q, top_k=5)
        got = np.array([[r for r, _ in g] for g in as_lists(res, len(q))])
        recall[name] = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, true, strict=True)])
        rows = {int(r): i for i, r in enumerate(embedded.row_id)}
        vecs = embedded.vectors[[rows[int(r)] for r in res.column("row_id").to_numpy()]]
        exact = np.einsum("ij,ij->i", vecs, q[res.column("query_index").to_numpy()])
        np.testing.assert_allclose(res.column("score").to_numpy(), exact, atol=1e-5)
    assert recall["codes"] >= recall["plain"] - 0.02 and recall["codes"] > 0.9


def test_take_rows_is_chunk_by_chunk_and_keeps_the_order() -> None:
    import pyarrow as pa

    from indexes.vector_index import take_rows

    spans = ((0, 3), (3, 0), (3, 5), (8, 2))
    column = pa.chunked_array([pa.array([f"k{i}" for i in range(s, s + n)], pa.string()) for s, n in spans])
    positions = np.array([9, 0, 4, 4, 2, 7, 3], dtype=np.int64)
    assert take_rows(column, positions).to_pylist() == [f"k{i}" for i in positions]
    assert take_rows(column, np.zeros(0, np.int64)).to_pylist() == []
    single = pa.chunked_array([pa.array(["a", "b", "c"])])
    assert take_rows(single, np.array([2, 0])).to_pylist() == ["c", "a"]
