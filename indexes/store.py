"""LanceDB tables with embeddings: ``spectra`` and ``molecules``, with idempotent batched appends.

Both tables carry, in their Arrow schema metadata, the engine schema version, the encoder hash and the
embedding dimension; opening refuses another schema version, and appending or indexing refuses
another encoder. Every row gets an ``row_id`` (int64, increasing in insertion order), which the vector
index maps its FAISS ids to and uses as the high-water mark of incremental index updates.

Appends are idempotent: :meth:`VectorTable.append` drops keys repeated inside the batch and inserts
with LanceDB ``merge_insert(key).when_not_matched_insert_all()``, so re-adding a spectrum id (or an
InChIKey) already present inserts nothing (about 25 ms per 10,000-row batch on a 100,000-row table;
see ``benchmarks/index``). A per-file ledger (``library_files``) skips unchanged input files whole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from engine.core.errors import IncompatibleArtifactError
from engine.core.schema import SCHEMA_VERSION, check_schema_version, molecule_schema, spectrum_schema

SPECTRA_TABLE = "spectra"
MOLECULES_TABLE = "molecules"
FILES_TABLE = "library_files"
ENCODER_HASH_KEY = b"engine.encoder_hash"
EMBEDDING_DIM_KEY = b"engine.embedding_dim"
ROW_ID = "row_id"
#: Boolean column of the ``spectra`` table marking decoy spectra (target-decoy FDR). Libraries built before
#: decoys existed lack it; they are still opened and searched (without q-values).
IS_DECOY = "is_decoy"

FILES_SCHEMA = pa.schema([  # type: ignore[arg-type]
    pa.field("file_sha256", pa.string()), pa.field("path", pa.string()), pa.field("n_records", pa.int64()),
    pa.field("n_skipped", pa.int64()), pa.field("added_at", pa.string()),
], metadata={b"engine.schema_version": str(SCHEMA_VERSION).encode()})


def _with_row_id(schema: pa.Schema, encoder_hash: str, dim: int) -> pa.Schema:
    meta: dict[bytes | str, bytes | str] = {k: v for k, v in (schema.metadata or {}).items()}
    meta[ENCODER_HASH_KEY] = encoder_hash.encode()
    meta[EMBEDDING_DIM_KEY] = str(dim).encode()
    return pa.schema([*schema, pa.field(ROW_ID, pa.int64(), nullable=False)], metadata=meta)


def library_spectrum_schema(dim: int, encoder_hash: str) -> pa.Schema:
    """The ``spectra`` table: :func:`engine.core.schema.spectrum_schema` with embedding, quality, ``is_decoy``
    and ``row_id``."""
    base = spectrum_schema(dim)
    return _with_row_id(base.append(pa.field(IS_DECOY, pa.bool_())), encoder_hash, dim)


def library_molecule_schema(dim: int, encoder_hash: str) -> pa.Schema:
    """The ``molecules`` table: :func:`engine.core.schema.molecule_schema` with embedding and ``row_id``."""
    return _with_row_id(molecule_schema(dim), encoder_hash, dim)


def sql_quote(text: str) -> str:
    """``text`` as an SQL string literal for a LanceDB filter (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


class VectorTable:
    """A LanceDB table keyed by a unique string column (``spectrum_id`` or ``inchikey``)."""

    def __init__(self, table: Any, key_column: str, *, where: str) -> None:
        self.table = table
        self.key_column = key_column
        self.where = where
        self._next_row_id: int | None = None

    @classmethod
    def open(cls, db_path: str | Path, name: str, key_column: str, *, schema: pa.Schema | None = None,
             dim: int | None = None, encoder_hash: str | None = None) -> VectorTable:
        """Open table ``name`` of the LanceDB database at ``db_path``; create it from ``schema`` if absent.

        Refuses (IncompatibleArtifactError) another schema version, another column set than ``schema``,
        or an embedding dimension / encoder hash other than the ones given.
        """
        import lancedb

        where = f"{db_path}/{name}"
        db = lancedb.connect(str(db_path))
        if name in db.list_tables().tables:
            table = db.open_table(name)
        elif schema is not None:
            Path(db_path).mkdir(parents=True, exist_ok=True)
            table = db.create_table(name, schema=schema)
        else:
            raise IncompatibleArtifactError(f"{where}: no table {name!r}; build it first")
        out = cls(table, key_column, where=where)
        check_schema_version(table.schema, where=where)
        legacy = [n for n in (schema.names if schema is not None else []) if n != IS_DECOY]
        if schema is not None and table.schema.names not in (schema.names, legacy):
            raise IncompatibleArtifactError(f"{where}: columns {table.schema.names} differ from this engine's "
                                            f"{schema.names}")
        out.check_encoder(dim=dim, encoder_hash=encoder_hash)
        return out

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def encoder_hash(self) -> str:
        return (self.schema.metadata or {}).get(ENCODER_HASH_KEY, b"").decode()

    @property
    def dim(self) -> int:
        return int((self.schema.metadata or {}).get(EMBEDDING_DIM_KEY, b"0"))

    def check_encoder(self, *, dim: int | None = None, encoder_hash: str | None = None) -> None:
        """Refuse a model whose embeddings do not belong in this table."""
        if dim is not None and dim != self.dim:
            raise IncompatibleArtifactError(f"{self.where}: table holds {self.dim}-dimensional embeddings, "
                                            f"the model makes {dim}; use a new library directory")
        if encoder_hash is not None and encoder_hash != self.encoder_hash:
            raise IncompatibleArtifactError(f"{self.where}: table embedded with encoder {self.encoder_hash}, "
                                            f"the model in use is {encoder_hash}; use a new library "
                                            f"directory or the model it was built with")

    def count_rows(self) -> int:
        return int(self.table.count_rows())

    def next_row_id(self) -> int:
        """One more than the largest ``row_id`` in the table (0 when empty); scanned once, then tracked."""
        if self._next_row_id is None:
            top = 0
            for batch in self.scan([ROW_ID]):
                if batch.num_rows:
                    top = max(top, int(np.max(batch.column(0).to_numpy())) + 1)
            self._next_row_id = top
        return self._next_row_id

    def append(self, data: pa.RecordBatch | pa.Table) -> int:
        """Insert the rows of ``data`` whose key is not in the table yet; return how many were inserted.

        ``data`` has every column of the table except ``row_id``, which is assigned here (and ``is_decoy``,
        False when absent). Keys repeated inside ``data`` keep their first row.
        """
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if table.num_rows == 0:
            return 0
        keys = table.column(self.key_column)
        if keys.null_count:
            raise ValueError(f"{self.where}: rows without {self.key_column}")
        first: dict[str, int] = {}
        for i, key in enumerate(keys.to_pylist()):
            first.setdefault(str(key), i)
        if len(first) < table.num_rows:
            table = table.take(np.fromiter(first.values(), dtype=np.int64, count=len(first)))
        start = self.next_row_id()
        row_ids = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
        if IS_DECOY in self.schema.names and IS_DECOY not in table.column_names:
            table = table.append_column(IS_DECOY, pa.array(np.zeros(table.num_rows, dtype=bool)))
        names = [n for n in self.schema.names if n != ROW_ID]
        table = table.select(names).append_column(ROW_ID, row_ids)
        table = table.cast(self.schema)
        result = (self.table.merge_insert(self.key_column).when_not_matched_insert_all().execute(table))
        self._next_row_id = start + table.num_rows
        return int(result.num_inserted_rows)

    def scan(self, columns: Sequence[str], *, where: str | None = None, batch_size: int = 65_536
             ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the rows matching the SQL filter ``where`` (all rows when None)."""
        query = self.table.search().select(list(columns))
        if where is not None:
            query = query.where(where)
        reader = query.limit(None).to_batches(batch_size)
        yield from reader

    def take_keys(self, keys: Sequence[str], columns: Sequence[str] | None = None) -> pa.Table:
        """Rows whose key is in ``keys`` (for small lookups, e.g. the rows behind search hits)."""
        if not keys:
            return self.schema.empty_table() if columns is None else self.schema.empty_table().select(columns)
        cond = f"{self.key_column} IN ({', '.join(sql_quote(k) for k in keys)})"
        query = self.table.search().where(cond)
        if columns is not None:
            query = query.select(list(columns))
        return query.limit(None).to_arrow()

    def take_row_ids(self, row_ids: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        """Rows with the given ``row_id`` values, in no particular order."""
        if len(row_ids) == 0:
            return self.schema.empty_table() if columns is None else self.schema.empty_table().select(columns)
        cond = f"{ROW_ID} IN ({', '.join(str(int(r)) for r in row_ids)})"
        query = self.table.search().where(cond)
        if columns is not None:
            query = query.select(list(columns))
        return query.limit(None).to_arrow()

    def version(self) -> int:
        """The table's current version (LanceDB writes a new one with every change)."""
        return int(self.table.version)

    def optimize(self, *, keep_from: int | None = None) -> None:
        """Compact the many small fragments left by batched appends and bring scalar indexes up to date.

        Compaction rewrites the fragments into new files, and LanceDB keeps the old ones for the versions
        that use them (7 days by default), so a table grown by many appends holds its data several times
        over. With ``keep_from`` (the :meth:`version` a writer opened the table at) the versions before it
        are removed with the files only they use: the version ``keep_from`` itself stays, so a reader that
        opened the table then (a running ``engine serve``) still finds its rows (Lance's own cleanup by
        version number; LanceDB's ``optimize`` only prunes by age)."""
        self.ensure_key_index()
        self.table.optimize()
        if keep_from is None:
            return
        older = [int(v["version"]) for v in self.table.list_versions() if int(v["version"]) < keep_from]
        if older:
            self.table.to_lance().cleanup_old_versions(versions=older, error_if_tagged_old_versions=False)

    def ensure_key_index(self) -> None:
        """A BTREE scalar index on the key and on ``row_id`` (lookups of hits and incremental scans)."""
        from lancedb.index import BTree

        existing = {tuple(ix.columns) for ix in self.table.list_indices()}
        for col in (self.key_column, ROW_ID):
            if (col,) not in existing:
                self.table.create_index(col, config=BTree())


class FileLedger:
    """Content hashes of the input files already added to a library (a LanceDB table)."""

    def __init__(self, db_path: str | Path, *, name: str = FILES_TABLE) -> None:
        import lancedb

        db = lancedb.connect(str(db_path))
        if name in db.list_tables().tables:
            self.table = db.open_table(name)
            check_schema_version(self.table.schema, where=f"{db_path}/{name}")
        else:
            self.table = db.create_table(name, schema=FILES_SCHEMA)
        self.done: set[str] = {str(s) for s in self.table.to_arrow().column("file_sha256").to_pylist()}

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self.done

    def record(self, sha256: str, path: str, *, n_records: int, n_skipped: int) -> None:
        self.table.add(pa.Table.from_pylist([{
            "file_sha256": sha256, "path": path, "n_records": n_records, "n_skipped": n_skipped,
            "added_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }], schema=FILES_SCHEMA))
        self.done.add(sha256)
