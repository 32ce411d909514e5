"""Decoy spectra and target-decoy q-values: deterministic decoys, never returned, incremental builds, old
libraries, ``--fdr`` and cross-mode analogue search, on the real MassBank sample."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from query_helpers import split_queries, write_mgf

from engine.commands.cli import main
from engine.core.decoys import DECOY_PREFIX, FragmentPool
from engine.core.errors import IncompatibleArtifactError
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.jobs.library import DECOY_POOL, build_library
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from engine.queries.analogue import AnalogueSettings, analogue_search
from engine.queries.fdr import q_values, with_q_values
from engine.queries.identity import IdentitySettings, identity_search_tdc
from engine.queries.references import References
from engine.queries.structure import StructureSettings, spectra_for_structures
from indexes.faiss_ivf import IndexPolicy
from indexes.library import Library, with_embeddings
from indexes.store import IS_DECOY, VectorTable, library_spectrum_schema


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def decoy_library(tmp_path_factory: pytest.TempPathFactory, sample_spectra: list[Spectrum]) -> tuple:
    queries, refs = split_queries(sample_spectra)
    tmp = tmp_path_factory.mktemp("decoys")
    first, second = write_mgf(refs[:60], tmp / "a.mgf"), write_mgf(refs[40:], tmp / "b.mgf")
    path = tmp / "library"
    embedder = FixedSpectrumEmbedder()
    build_library([first], path, embedder, progress=False, policy=IndexPolicy(target_partition_rows=30))
    lib = Library.open(path)
    before = lib.table.scan(["spectrum_id", "embedding"], where=f"{IS_DECOY} = true")
    first_decoys = pa.Table.from_batches(list(before))
    result = build_library([first, second], path, embedder, progress=False)  # a is skipped, b adds its own
    return path, embedder, queries, refs, first_decoys, result, tmp


def test_decoys_are_deterministic_and_shaped_like_their_target(sample_spectra: list[Spectrum]) -> None:
    pool = FragmentPool.load(DECOY_POOL)
    target = next(s for s in sample_spectra if s.n_peaks >= 8)
    a, b = pool.decoy(target), pool.decoy(target)
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.mz, b.mz)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    assert a.spectrum_id == DECOY_PREFIX + target.spectrum_id and a.inchikey is None and a.smiles is None
    assert (a.precursor_mz, a.ion_mode, a.n_peaks) == (target.precursor_mz, target.ion_mode, target.n_peaks)
    np.testing.assert_allclose(np.sort(a.intensity), np.sort(target.intensity))
    assert len(set(np.round(a.mz, 2)) & set(np.round(target.mz, 2))) < target.n_peaks // 2
    assert np.all(np.diff(a.mz) >= 0)
    # another pool instance (e.g. another process) gives the same decoy: the seed comes from the id
    c = FragmentPool.load(DECOY_POOL).decoy(target)
    assert c is not None and np.array_equal(c.mz, a.mz)


def test_q_values_follow_target_decoy_competition() -> None:
    target = np.array([0.9, 0.8, 0.7, 0.6, 0.5, np.nan, 0.3])
    decoy = np.array([0.1, 0.85, np.nan, 0.2, 0.55, 0.4, 0.2])
    q = q_values(target, decoy)
    # winners by score: .9 T, .85 D, .7 T, .6 T, .55 D, .4 D, .3 T
    assert np.isnan(q[[1, 4, 5]]).all()  # the decoy won (or no target): no q-value
    np.testing.assert_allclose(q[[0, 2, 3, 6]], [2 / 3, 2 / 3, 2 / 3, 1.0])
    rng = np.random.default_rng(0)
    t, d = rng.random(500), rng.random(500) * 0.8
    q = q_values(t, d)
    ok = np.isfinite(q)
    order = np.argsort(-t[ok])
    assert np.all(np.diff(q[ok][order]) >= -1e-12)  # monotone: a lower score never has a smaller q-value


def test_incremental_build_adds_each_decoy_once(decoy_library: tuple) -> None:
    path, _, _, refs, first_decoys, result, _ = decoy_library
    lib = Library.open(path)
    table = pa.Table.from_batches(list(lib.table.scan(["spectrum_id", IS_DECOY])))
    ids = table.column("spectrum_id").to_pylist()
    decoys = [i for i, d in zip(ids, table.column(IS_DECOY).to_pylist(), strict=True) if d]
    targets = {i for i in ids if not i.startswith(DECOY_PREFIX)}
    assert len(ids) == len(set(ids)) and len(targets) == len(refs)
    assert sorted(decoys) == sorted(DECOY_PREFIX + t for t in targets)
    assert result.decoys_inserted == len(refs) - 60 and result.decoys == len(refs)
    # decoys of the first file were not rebuilt or changed
    again = lib.table.take_keys(first_decoys.column("spectrum_id").to_pylist(), ["spectrum_id", "embedding"])
    by_id = dict(zip(again.column("spectrum_id").to_pylist(), again.column("embedding").to_pylist(), strict=True))
    for sid, emb in zip(first_decoys.column("spectrum_id").to_pylist(),
                        first_decoys.column("embedding").to_pylist(), strict=True):
        np.testing.assert_array_equal(by_id[sid], emb)
    # decoys sit in the partitions of their targets (same ion mode and precursor m/z)
    index = lib.index()
    assert index.manifest.n_rows == 2 * len(refs)
    where = {key: pid for pid in range(len(index.manifest.partitions))
             for key in index.partition(pid).meta.column("key").to_pylist()}
    assert len(set(where.values())) > 2 and all(where[DECOY_PREFIX + t] == where[t] for t in targets)
    with pytest.raises(IncompatibleArtifactError, match="holds decoys"):
        build_library([path.parent / "b.mgf"], path, FixedSpectrumEmbedder(), progress=False, decoys=False)


def test_decoys_are_never_returned_and_q_values_are_monotone(decoy_library: tuple) -> None:
    path, embedder, queries, _, _, _, _ = decoy_library
    lib = Library.open(path)
    refs = References(lib)
    assert refs.has_decoys and refs.decoy_note is None
    batch = spectra_to_batch(queries)
    hits, contest = identity_search_tdc(batch, lib, refs, embedder, settings=IdentitySettings(top_k=5))
    assert contest is not None and contest.num_rows == len(queries)
    assert np.isfinite(contest.column("decoy_score").to_numpy(zero_copy_only=False)).any()
    assert not any(i.startswith(DECOY_PREFIX) for i in hits.column("library_id").to_pylist())
    hits = with_q_values(hits, contest)
    rows = hits.to_pylist()
    assert all(r["q_value"] is None for r in rows if r["rank"] > 1)
    scored = sorted((r for r in rows if r["q_value"] is not None), key=lambda r: -r["score"])
    assert scored and all(a["q_value"] <= b["q_value"] + 1e-7 for a, b in itertools.pairwise(scored))
    analogues = analogue_search(batch, lib, refs, embedder, settings=AnalogueSettings(top_k=10, n_candidates=50))
    assert analogues.num_rows
    assert not any(i.startswith(DECOY_PREFIX) for i in analogues.column("library_id").to_pylist())
    smiles = [q.smiles for q in queries if q.smiles][:3]
    found = spectra_for_structures(smiles, lib, refs, _SmilesEmbedder(embedder.dim),  # structure -> spectra too
                                   settings=StructureSettings(top_k=20))
    assert found.num_rows and not any(i.startswith(DECOY_PREFIX) for i in found.column("library_id").to_pylist())


class _SmilesEmbedder:
    """Random unit vectors for SMILES (the structure lookup only needs vectors of the library's size)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed_smiles(self, smiles: list[str]) -> np.ndarray:
        v = np.random.default_rng(1).normal(size=(len(smiles), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_search_cli_fdr_and_cross_mode(decoy_library: tuple) -> None:
    path, _, queries, _, _, _, tmp = decoy_library
    qfile = write_mgf(queries, tmp / "queries.mgf")
    out_all, out_fdr = tmp / "all.parquet", tmp / "fdr.parquet"
    code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--quiet",
                     "--out", str(out_all))
    assert code == 0, text
    every = pq.read_table(out_all)
    q = every.column("q_value").to_numpy(zero_copy_only=False)
    assert np.isfinite(q).any()
    limit = float(np.nanmedian(q))
    code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--quiet",
                     "--fdr", str(limit), "--out", str(out_fdr))
    assert code == 0, text
    kept = pq.read_table(out_fdr)
    assert 0 < kept.num_rows < every.num_rows
    assert (kept.column("q_value").to_numpy() <= limit + 1e-6).all()
    assert kept.num_rows == int((np.nan_to_num(q, nan=2.0) <= limit + 1e-6).sum())
    # analogue search across ion modes: hits carry their ion mode, some from the other mode
    modes = {s.spectrum_id: s.ion_mode for s in queries}
    for flag, cross in (((), False), (("--cross-mode",), True)):
        out = tmp / f"analogue{cross}.parquet"
        code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--quiet",
                         "--mode", "analogue", *flag, "--out", str(out))
        assert code == 0, text
        rows = pq.read_table(out).to_pylist()
        other = [r for r in rows if r["ion_mode"] != modes[r["query_id"]]]
        assert bool(other) == cross
    code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--cross-mode")
    assert code == 2 and "analogue" in text


def test_library_built_before_decoys_is_still_read(tmp_path: Path, sample_spectra: list[Spectrum]) -> None:
    queries, refs = split_queries(sample_spectra)
    embedder = FixedSpectrumEmbedder()
    path = tmp_path / "old"
    new = library_spectrum_schema(embedder.dim, embedder.encoder_hash)
    legacy = new.remove(new.get_field_index(IS_DECOY))
    VectorTable.open(path, "spectra", "spectrum_id", schema=legacy, dim=embedder.dim,
                     encoder_hash=embedder.encoder_hash)
    lib = Library.create(path, dim=embedder.dim, encoder_hash=embedder.encoder_hash)  # accepts the old columns
    batch = spectra_to_batch(refs)
    emb, quality = embedder.embed_spectra(batch)
    lib.add(with_embeddings(batch, emb, quality))
    lib.build_index()
    lib = Library.open(path)
    assert not lib.has_decoy_column and IS_DECOY not in lib.table.schema.names
    references = References(lib)
    assert not references.has_decoys and "before decoy" in (references.decoy_note or "")
    hits, contest = identity_search_tdc(spectra_to_batch(queries), lib, references, embedder)
    assert hits.num_rows and contest is None and hits.column("q_value").null_count == hits.num_rows
    qfile = write_mgf(queries, tmp_path / "q.mgf")
    out = tmp_path / "hits.parquet"
    code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--quiet", "--out", str(out))
    assert code == 0 and "note:" in text and "before decoy" in text, text
    assert pq.read_table(out).column("q_value").null_count == pq.read_table(out).num_rows
    code, text = run("search", str(qfile), "--library", str(path), "--fixed-embedder", "--fdr", "0.01")
    assert code == 2 and "decoy" in text
    # extending it keeps it as it is (no decoys); asking for decoys is refused
    extra = write_mgf(queries[:5], tmp_path / "extra.mgf")
    build_library([extra], path, embedder, progress=False)
    assert Library.open(path).table.count_rows() == len(refs) + 5
    with pytest.raises(IncompatibleArtifactError, match="before decoy"):
        build_library([extra], path, embedder, progress=False, decoys=True)


def test_analogue_trust_table_errs_high(tmp_path: Path) -> None:
    import json

    from engine.queries.trust import TRUST_FILE, share_below, trust_table

    (tmp_path / TRUST_FILE).write_text(json.dumps({"encoder_hash": "abc", "n_candidates": 10, "levels": [
        {"min_reliability": 0.0, "share_below": 0.6}, {"min_reliability": 0.5, "share_below": 0.2}]}))
    table, _ = trust_table("abc", 10, directory=tmp_path)
    assert trust_table("other", 10, directory=tmp_path)[0] is None
    assert share_below(0.55, table) == 0.2 and share_below(0.45, table) == 0.6  # the level at or below
    assert share_below(0.5, None) is None
    # a table holds for the candidate pool it was measured with: another pool gets no estimate, and says why
    found, why = trust_table("abc", 1000, directory=tmp_path)
    assert found is None and why is not None and "10 analogue candidates" in why and "1000" in why
    assert trust_table("other", 10, directory=tmp_path)[1] == "the analogue trust table was measured for another model"
    assert "no analogue trust table" in str(trust_table("abc", 10, directory=tmp_path / "none")[1])


def test_shipped_trust_table_is_for_the_default_model_and_annotate_pool() -> None:
    from engine.jobs.settings import AnnotateSettings
    from engine.models.model import DEFAULT_MODEL, load_model
    from engine.queries.trust import trust_table

    table, why = trust_table(load_model(DEFAULT_MODEL).encoder_hash, AnnotateSettings().analogue_candidates)
    assert why is None and table is not None
    shares = [lv["share_below"] for lv in table["levels"] if lv["share_below"] is not None]
    assert len(shares) >= 3 and all(0 <= s <= 1 for s in shares)
