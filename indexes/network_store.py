"""The LanceDB store behind a growing molecular network: nodes, candidate edges, inputs already added.

Three tables in one LanceDB database (``OUT/store``):

* ``nodes``: one row per spectrum (``node_id`` 0, 1, ... in the order added) with its embedding, peaks,
  identifiers and library annotation;
* ``candidates``: directed candidate edges ``source -> target`` (``target`` among the ``top_k`` best
  neighbours of ``source`` when the row was written) with cosine and predicted Tanimoto. Rows are only
  appended; readers keep the best ``top_k`` per source, and :meth:`NetworkStore.replace_candidates`
  compacts the table when it holds many superseded rows;
* ``inputs``: the input files (content-hash keys) whose spectra are in ``nodes``, with their read report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.schema import SCHEMA_VERSION, SCHEMA_VERSION_KEY, check_schema_version, column

NODES = "nodes"
CANDIDATES = "candidates"
INPUTS = "inputs"
_META: dict[bytes | str, bytes | str] = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}

#: Node columns besides the embedding and the peaks, in order.
NODE_FIELDS: tuple[pa.Field[Any], ...] = (
    pa.field("node_id", pa.int64(), nullable=False), column("spectrum_id"), pa.field("input_key", pa.string()),
    column("source_file"), column("record_index"), pa.field("feature_id", pa.string()), column("scan"),
    column("precursor_mz"), column("ion_mode"), column("retention_time"), column("quality"),
    pa.field("annotation_library_id", pa.string()),
    pa.field("annotation_name", pa.string()),
    pa.field("annotation_smiles", pa.string()),
    pa.field("annotation_inchikey", pa.string()),
    pa.field("annotation_probability", pa.float32()),
)
NODE_COLUMNS: tuple[str, ...] = tuple(f.name for f in NODE_FIELDS)

_CANDIDATE_FIELDS: list[pa.Field[Any]] = [
    pa.field("source", pa.int64(), nullable=False), pa.field("target", pa.int64(), nullable=False),
    pa.field("cosine", pa.float32()), pa.field("predicted_tanimoto", pa.float32()),
]
CANDIDATE_SCHEMA = pa.schema(_CANDIDATE_FIELDS, metadata=_META)
INPUT_SCHEMA = pa.schema([
    pa.field("input_key", pa.string(), nullable=False), pa.field("path", pa.string()),
    pa.field("kind", pa.string()), pa.field("info_json", pa.string()),
], metadata=_META)


def node_schema(dim: int) -> pa.Schema:
    """The ``nodes`` table: :data:`NODE_FIELDS`, the embedding and the peaks."""
    fields: list[pa.Field[Any]] = [*NODE_FIELDS, pa.field("embedding", pa.list_(pa.float32(), dim)),
                              pa.field("mz", pa.list_(pa.float64())), pa.field("intensity", pa.list_(pa.float32()))]
    return pa.schema(fields, metadata=_META)


class NetworkStore:
    """Open (or create) the three tables of a network store at ``path`` for ``dim``-dimensional embeddings."""

    def __init__(self, path: str | Path, dim: int) -> None:
        import lancedb

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(str(self.path))
        names = set(self.db.list_tables().tables)
        schemas = {NODES: node_schema(dim), CANDIDATES: CANDIDATE_SCHEMA, INPUTS: INPUT_SCHEMA}
        self.tables: dict[str, Any] = {}
        for name, schema in schemas.items():
            if name in names:
                table = self.db.open_table(name)
                check_schema_version(table.schema, where=f"{self.path}/{name}")
            else:
                table = self.db.create_table(name, schema=schema)
            self.tables[name] = table
        self.dim = dim
        self._n_nodes = int(self.tables[NODES].count_rows())

    # --- inputs ------------------------------------------------------------------------------------
    def input_keys(self) -> set[str]:
        return {str(k) for k in self.tables[INPUTS].to_arrow().column("input_key").to_pylist()}

    def inputs(self) -> list[dict[str, Any]]:
        """Inputs added so far, with their read report (``info``)."""
        rows = self.tables[INPUTS].to_arrow().to_pylist()
        return [{**{k: r[k] for k in ("input_key", "path", "kind")}, "info": json.loads(r["info_json"] or "{}")}
                for r in rows]

    def add_input(self, key: str, path: str, kind: str, info: dict[str, Any]) -> None:
        """Record an input as added (after its nodes are written)."""
        self.tables[INPUTS].add(pa.table({"input_key": [key], "path": [path], "kind": [kind],
                                          "info_json": [json.dumps(info, default=str)]}, schema=INPUT_SCHEMA))

    # --- nodes -------------------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        return self._n_nodes

    def add_nodes(self, table: pa.Table) -> None:
        """Append nodes; ``node_id`` must continue at :attr:`n_nodes`."""
        if table.num_rows == 0:
            return
        ids = table.column("node_id").to_numpy()
        if int(ids[0]) != self._n_nodes or np.any(np.diff(ids) != 1):
            raise ValueError("node ids must continue the store's numbering")
        self.tables[NODES].add(table.select(node_schema(self.dim).names).cast(node_schema(self.dim)))
        self._n_nodes += table.num_rows

    def read_nodes(self, columns: list[str]) -> pa.Table:
        """``columns`` of every node, ordered by ``node_id``."""
        cols = list(dict.fromkeys(["node_id", *columns]))
        table = self.tables[NODES].to_lance().to_table(columns=cols)
        table = table.sort_by("node_id")
        return table.select(columns)

    def embeddings(self) -> npt.NDArray[np.float32]:
        """The ``[n_nodes, dim]`` embedding matrix, rows in ``node_id`` order."""
        col: Any = self.read_nodes(["embedding"]).column("embedding").combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False) if len(col) else np.zeros(0, np.float32)
        return np.ascontiguousarray(flat.reshape(len(col), self.dim), dtype=np.float32)

    # --- candidates --------------------------------------------------------------------------------
    def add_candidates(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables[CANDIDATES].add(table.cast(CANDIDATE_SCHEMA))

    def read_candidates(self) -> pa.Table:
        return self.tables[CANDIDATES].to_lance().to_table()

    def replace_candidates(self, table: pa.Table) -> None:
        """Rewrite the candidate table with ``table`` (compaction after superseded rows pile up)."""
        self.tables[CANDIDATES] = self.db.create_table(CANDIDATES, data=table.cast(CANDIDATE_SCHEMA),
                                                       schema=CANDIDATE_SCHEMA, mode="overwrite")



def read_node_rows(path: str | Path, node_ids: list[int], columns: list[str]) -> pa.Table:
    """``columns`` of the nodes ``node_ids`` of the store at ``path`` (small lookups: the report's plots)."""
    import lancedb

    table = lancedb.connect(str(path)).open_table(NODES)
    if not node_ids:
        return table.schema.empty_table().select(columns)
    where = f"node_id IN ({', '.join(str(int(i)) for i in node_ids)})"
    return table.to_lance().to_table(columns=columns, filter=where)
