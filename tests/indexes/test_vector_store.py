from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from vs_helpers import SAMPLE  # noqa: F401  (the fixture file this module relies on)

from engine.core.errors import IncompatibleArtifactError
from engine.core.schema import SCHEMA_VERSION_KEY, spectra_to_batch
from engine.models.encoders.fixed import FixedSpectrumEmbedder
from indexes.library import with_embeddings
from indexes.store import SPECTRA_TABLE, VectorTable, library_spectrum_schema

EMB = FixedSpectrumEmbedder(dim=16)


def _spectra_rows(sample_table: pa.Table, start: int, stop: int) -> pa.Table:
    from engine.core.records import Spectrum

    rows = sample_table.slice(start, stop - start).to_pylist()
    spectra = [Spectrum(spectrum_id=r["spectrum_id"], mz=np.asarray(r["mz"]), intensity=np.asarray(r["intensity"],
                        dtype=np.float32), precursor_mz=r["precursor_mz"], ion_mode=r["ion_mode"],
                        source_file="sample.parquet", smiles=r["smiles"], inchikey=r["inchikey"], name=r["name"])
               for r in rows]
    batch = spectra_to_batch(spectra)
    emb, quality = EMB.embed_spectra(batch)
    return with_embeddings(batch, emb, quality)


def _open(path: Path) -> VectorTable:
    return VectorTable.open(path, SPECTRA_TABLE, "spectrum_id",
                            schema=library_spectrum_schema(EMB.dim, EMB.encoder_hash),
                            dim=EMB.dim, encoder_hash=EMB.encoder_hash)


def test_append_is_idempotent(sample_table: pa.Table, tmp_path: Path) -> None:
    table = _open(tmp_path)
    assert table.append(_spectra_rows(sample_table, 0, 100)) == 100
    assert table.append(_spectra_rows(sample_table, 50, 150)) == 50  # 50 already there
    assert table.append(_spectra_rows(sample_table, 0, 150)) == 0
    doubled = pa.concat_tables([_spectra_rows(sample_table, 150, 160)] * 2)
    assert table.append(doubled) == 10  # repeats inside one batch keep the first
    assert table.count_rows() == 160
    ids = pa.Table.from_batches(list(table.scan(["spectrum_id", "row_id", "embedding", "quality"])))
    assert len(set(ids.column("spectrum_id").to_pylist())) == 160
    row_ids = ids.column("row_id").to_numpy()
    assert len(set(row_ids.tolist())) == 160
    # reopened, it continues after the largest row id and still refuses duplicates
    again = _open(tmp_path)
    assert again.next_row_id() == int(row_ids.max()) + 1
    assert again.append(_spectra_rows(sample_table, 0, 214)) == 54
    assert again.count_rows() == 214
    emb = np.stack(ids.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    got = again.take_keys([sample_table.column("spectrum_id")[3].as_py()], ["spectrum_id", "precursor_mz"])
    assert got.num_rows == 1 and got.column(1)[0].as_py() == sample_table.column("precursor_mz")[3].as_py()


def test_schema_version_and_encoder_refused(tmp_path: Path) -> None:
    import lancedb

    schema = library_spectrum_schema(EMB.dim, EMB.encoder_hash)
    meta = dict(schema.metadata)
    meta[SCHEMA_VERSION_KEY] = b"999"
    lancedb.connect(str(tmp_path / "old")).create_table(SPECTRA_TABLE, schema=schema.with_metadata(meta))
    with pytest.raises(IncompatibleArtifactError, match="schema version 999"):
        VectorTable.open(tmp_path / "old", SPECTRA_TABLE, "spectrum_id")
    _open(tmp_path / "new")
    with pytest.raises(IncompatibleArtifactError, match="encoder"):
        VectorTable.open(tmp_path / "new", SPECTRA_TABLE, "spectrum_id", encoder_hash="another")
    with pytest.raises(IncompatibleArtifactError, match="dimensional"):
        VectorTable.open(tmp_path / "new", SPECTRA_TABLE, "spectrum_id", dim=EMB.dim + 1)
    with pytest.raises(IncompatibleArtifactError, match="no table"):
        VectorTable.open(tmp_path / "empty", SPECTRA_TABLE, "spectrum_id")


def test_fixed_embedder_is_deterministic_and_normalised(sample_table: pa.Table) -> None:
    a = _spectra_rows(sample_table, 0, 20)
    b = _spectra_rows(sample_table, 0, 20)
    assert a.column("embedding").equals(b.column("embedding"))
    q = a.column("quality").to_numpy()
    assert ((q > 0) & (q <= 1)).all()
    n_peaks = a.column("n_peaks").to_numpy()
    assert (np.diff(q[np.argsort(n_peaks)]) >= 0).all()  # more peaks, higher quality
    assert FixedSpectrumEmbedder(dim=16).encoder_hash == EMB.encoder_hash != FixedSpectrumEmbedder(dim=17).encoder_hash


def test_optimize_prunes_the_copies_of_earlier_versions(sample_table: pa.Table, tmp_path: Path) -> None:
    """Two adds of appends + compaction: pruning at the second leaves the first add's copies out, keeps every
    row and keeps the version the second writer opened readable."""
    def data_bytes(root: Path) -> int:
        return sum(f.stat().st_size for f in (root / f"{SPECTRA_TABLE}.lance" / "data").glob("*"))

    def add(table: VectorTable, start: int, *, prune: bool) -> None:
        opened = table.version()
        for a in range(start, start + 100, 10):
            table.append(_spectra_rows(sample_table, a, a + 10))
        table.optimize(keep_from=opened if prune else None)

    plain, pruned = _open(tmp_path / "plain"), _open(tmp_path / "pruned")
    for t in (plain, pruned):
        add(t, 0, prune=t is pruned)
    opened = pruned.table.version
    for t in (plain, pruned):
        add(t, 100, prune=t is pruned)
    assert data_bytes(tmp_path / "pruned") < 0.8 * data_bytes(tmp_path / "plain")
    versions = [v["version"] for v in pruned.table.list_versions()]
    assert opened in versions and len(versions) < len(plain.table.list_versions())
    assert pruned.count_rows() == plain.count_rows() == 200
    pruned.table.checkout(opened)  # what a reader that opened the table before the second add sees
    assert pruned.table.count_rows() == 100
    pruned.table.checkout_latest()
    assert pruned.take_keys([sample_table.column("spectrum_id")[150].as_py()], ["spectrum_id"]).num_rows == 1
