"""A library directory: a LanceDB table with embeddings plus its partitioned vector index.

``LIBRARY/`` is a LanceDB database (``lancedb.connect(LIBRARY).open_table("spectra")``) holding the
table, the ledger of input files, and ``LIBRARY/index/`` (see :mod:`indexes.vector_index`). A molecule
database (``MOLDB/``) has the same layout with the table ``molecules``.

Building a library (read -> embed -> store -> index) lives in :mod:`engine.jobs.library`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.errors import IncompatibleArtifactError
from indexes.faiss_ivf import IndexPolicy
from indexes.manifest import MANIFEST_NAME, IndexManifest
from indexes.partition import NEUTRAL
from indexes.search import search
from indexes.store import (
    IS_DECOY,
    MOLECULES_TABLE,
    ROW_ID,
    SPECTRA_TABLE,
    VectorTable,
    library_molecule_schema,
    library_spectrum_schema,
)
from indexes.vector_index import (
    LIGHT_COLUMNS,
    VectorIndex,
    add_to_vector_index,
    build_vector_index,
    retrain_vector_index,
)

INDEX_DIR = "index"


@dataclass(frozen=True)
class TableLayout:
    """How a table maps onto a vector index: its key, mass, ion-mode and quality columns."""

    table: str
    key_column: str
    mass_column: str
    ion_mode_column: str | None
    quality_column: str | None

    def schema(self, dim: int, encoder_hash: str) -> pa.Schema:
        if self.table == SPECTRA_TABLE:
            return library_spectrum_schema(dim, encoder_hash)
        return library_molecule_schema(dim, encoder_hash)


SPECTRA = TableLayout(SPECTRA_TABLE, "spectrum_id", "precursor_mz", "ion_mode", "quality")
MOLECULES = TableLayout(MOLECULES_TABLE, "inchikey", "monoisotopic_mass", None, None)


def layout_of(path: str | Path) -> TableLayout:
    """The layout of the library or molecule database at ``path``."""
    import lancedb

    tables = set(lancedb.connect(str(path)).list_tables().tables) if Path(path).is_dir() else set()
    if SPECTRA_TABLE in tables:
        return SPECTRA
    if MOLECULES_TABLE in tables:
        return MOLECULES
    raise IncompatibleArtifactError(f"{path}: neither a spectrum library nor a molecule database "
                                    f"(no table {SPECTRA_TABLE!r} or {MOLECULES_TABLE!r})")


def with_embeddings(batch: pa.RecordBatch | pa.Table, embeddings: npt.NDArray[np.float32],
                    quality: npt.NDArray[np.float32] | None = None) -> pa.Table:
    """``batch`` plus an ``embedding`` column (re-normalised to unit length) and, when given, ``quality``."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.shape[0] != table.num_rows:
        raise ValueError(f"{emb.shape[0]} embeddings for {table.num_rows} rows")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.asarray(emb / np.where(norms > 0, norms, 1), dtype=np.float32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    table = table.append_column("embedding", col)
    if quality is not None:
        table = table.append_column("quality", pa.array(np.asarray(quality, dtype=np.float32)))
    return table


class Library:
    """An opened library (or molecule database) directory."""

    def __init__(self, path: str | Path, table: VectorTable, layout: TableLayout) -> None:
        self.path = Path(path)
        self.table = table
        self.layout = layout
        self._index: VectorIndex | None = None

    @classmethod
    def open(cls, path: str | Path, *, layout: TableLayout | None = None, dim: int | None = None,
             encoder_hash: str | None = None) -> Library:
        """Open an existing directory, refusing another schema version, dimension or encoder."""
        layout = layout or layout_of(path)
        table = VectorTable.open(path, layout.table, layout.key_column, dim=dim, encoder_hash=encoder_hash)
        return cls(path, table, layout)

    @classmethod
    def create(cls, path: str | Path, *, dim: int, encoder_hash: str, layout: TableLayout = SPECTRA) -> Library:
        """Open ``path`` or create an empty library there for embeddings of ``dim`` by ``encoder_hash``."""
        schema = layout.schema(dim, encoder_hash)
        table = VectorTable.open(path, layout.table, layout.key_column, schema=schema, dim=dim,
                                 encoder_hash=encoder_hash)
        return cls(path, table, layout)

    @property
    def index_dir(self) -> Path:
        return self.path / INDEX_DIR

    def has_index(self) -> bool:
        return (self.index_dir / MANIFEST_NAME).is_file()

    def manifest(self) -> IndexManifest:
        return IndexManifest.load(self.index_dir)

    @property
    def has_decoy_column(self) -> bool:
        """Whether the table marks decoys (libraries built before decoys existed do not)."""
        return IS_DECOY in self.table.schema.names

    def n_decoys(self) -> int:
        """Decoy spectra in the table (0 without the ``is_decoy`` column)."""
        if not self.has_decoy_column:
            return 0
        return int(self.table.table.count_rows(f"{IS_DECOY} = true"))

    def decoy_note(self) -> str | None:
        """Why q-values cannot be computed on this library (None when it holds decoys)."""
        if self.layout.table != SPECTRA_TABLE or self.n_decoys():
            return None
        if not self.has_decoy_column:
            return (f"{self.path}: library built before decoy spectra existed: no q-values (rebuild it with "
                    f"`engine library build` in a new directory for target-decoy FDR)")
        return f"{self.path}: library built without decoy spectra (--no-decoys): no q-values"

    def add(self, batch: pa.RecordBatch | pa.Table) -> int:
        """Append rows carrying embeddings (see :func:`with_embeddings`); returns how many were new."""
        return self.table.append(batch)

    # ------------------------------------------------------------------------------------ index

    def light(self, *, where: str | None = None) -> pa.Table:
        """The columns the index needs (:data:`LIGHT_COLUMNS`) for all rows or those matching ``where``."""
        lay = self.layout
        cols = [ROW_ID, lay.key_column, lay.mass_column]
        cols += [c for c in (lay.ion_mode_column, lay.quality_column) if c is not None]
        batches = list(self.table.scan(cols, where=where))
        data = pa.Table.from_batches(batches) if batches else self.table.schema.empty_table().select(cols)
        n = data.num_rows
        ion_mode = (data.column(lay.ion_mode_column) if lay.ion_mode_column
                    else pa.array([NEUTRAL] * n, pa.string()))
        quality = (data.column(lay.quality_column).fill_null(pa.scalar(1.0, pa.float32())) if lay.quality_column
                   else pa.array(np.ones(n, np.float32)))
        arrays = [data.column(ROW_ID), data.column(lay.key_column), data.column(lay.mass_column), ion_mode,
                  quality]
        return pa.Table.from_arrays(arrays, names=list(LIGHT_COLUMNS))

    def _embeddings(self, where: str | None = None) -> Iterable[pa.RecordBatch]:
        return self.table.scan([ROW_ID, "embedding"], where=where)

    def build_index(self, *, policy: IndexPolicy | None = None, progress: bool = False) -> IndexManifest:
        """(Re)build the whole index from the table."""
        self._index = None
        light = self.light()
        return build_vector_index(self.index_dir, light, self._embeddings, dim=self.table.dim,
                                  encoder_hash=self.table.encoder_hash, table=self.layout.table,
                                  key_column=self.layout.key_column, mass_column=self.layout.mass_column,
                                  table_rows=self.table.count_rows(), policy=policy, progress=progress)

    def update_index(self, *, policy: IndexPolicy | None = None, progress: bool = False,
                     rebuild_when_larger: bool = True) -> IndexManifest:
        """Bring the index up to date with the table without retraining.

        Rows newer than the manifest's ``max_row_id`` are added to their partitions. Without an index,
        or (with ``rebuild_when_larger``) when the new rows outnumber the indexed ones, the index is
        rebuilt instead; a repository passes False so that adding rows never rebuilds the others.
        """
        if not self.has_index():
            return self.build_index(policy=policy, progress=progress)
        manifest = self.manifest()
        manifest.check(where=str(self.index_dir), dim=self.table.dim, encoder_hash=self.table.encoder_hash)
        table_rows = self.table.count_rows()
        if table_rows == manifest.table_rows:
            return manifest
        where = f"{ROW_ID} > {manifest.max_row_id}"
        light = self.light(where=where)
        if light.num_rows + manifest.n_rows != table_rows:
            raise IncompatibleArtifactError(f"{self.index_dir}: index and table disagree ({manifest.n_rows} "
                                            f"indexed + {light.num_rows} new != {table_rows} rows); "
                                            f"rebuild it with `engine index retrain --all`")
        if rebuild_when_larger and light.num_rows > manifest.n_rows:
            return self.build_index(policy=policy or manifest.policy, progress=progress)
        self._index = None
        by_id = {int(r): i for i, r in enumerate(light.column("row_id").to_numpy())}
        emb = np.zeros((light.num_rows, manifest.dim), np.float32)
        for batch in self._embeddings(where):
            rows = [by_id[int(r)] for r in batch.column(ROW_ID).to_numpy()]
            col: Any = batch.column("embedding")
            emb[rows] = col.flatten().to_numpy().reshape(-1, manifest.dim)
        return add_to_vector_index(self.index_dir, light, emb, table_rows=table_rows)

    def retrain(self, names: Sequence[str] | None = None, *, all_partitions: bool = False,
                policy: IndexPolicy | None = None, progress: bool = False) -> list[str]:
        """Retrain stale partitions (or ``names``, or all of them); returns the names retrained."""
        self._index = None
        if all_partitions:
            names = [p.name for p in self.manifest().partitions]
        return retrain_vector_index(self.index_dir, names, policy=policy, progress=progress)

    def index(self, *, use_gpu: bool | None = None) -> VectorIndex:
        """The vector index, opened once; refused when it does not match the table."""
        if self._index is None:
            self._index = VectorIndex.open(self.index_dir, dim=self.table.dim,
                                           encoder_hash=self.table.encoder_hash,
                                           table_rows=self.table.count_rows(), use_gpu=use_gpu)
        return self._index

    def search(self, queries: npt.NDArray[np.float32], **kwargs: Any) -> pa.Table:
        """:func:`indexes.search.search` on this library's index."""
        return search(self.index(), queries, **kwargs)

    def info(self) -> dict[str, Any]:
        """Rows, encoder, and per-partition index state (kind, rows, stale reason)."""
        out: dict[str, Any] = {"path": str(self.path), "table": self.layout.table,
                               "rows": self.table.count_rows(), "encoder_hash": self.table.encoder_hash,
                               "dim": self.table.dim, "index": None}
        if self.layout.table == SPECTRA_TABLE:
            out["decoys"] = self.n_decoys() if self.has_decoy_column else None
        if self.has_index():
            man = self.manifest()
            stale = man.stale()
            out["index"] = {
                "rows": man.n_rows, "table_rows_indexed": man.table_rows, "max_row_id": man.max_row_id,
                "n_probe": man.policy.n_probe,
                "partitions": [{"name": p.name, "ion_mode": p.ion_mode, "mass_lo": p.mass_lo,
                                "mass_hi": None if p.mass_hi == float("inf") else p.mass_hi,
                                "kind": p.kind, "rows": p.n_rows, "nlist": p.nlist,
                                "pq_m": p.pq_m, "stale": stale.get(p.name)} for p in man.partitions],
            }
        return out
