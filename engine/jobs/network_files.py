"""The files of a molecular network: node and edge tables, GraphML, Cytoscape.js JSON, GNPS pairs table.

In ``OUT``:

* ``nodes.parquet``: ``node_id``, ``cluster_id`` (the id the pairs table and graph use: the feature id
  when every node has a distinct one, as in feature-based molecular networking, else ``node_id + 1``),
  ``query_id`` (spectrum id / USI), ``feature_id``, ``scan``, ``source_file``, ``record_index``,
  ``precursor_mz``, ``ion_mode``, ``retention_time``, ``quality``, ``component`` (1 = largest, -1 = no
  edge) and ``component_size``, the library annotation (``annotation_*``, probability = calibrated
  identity score) and, for nodes without one, ``neighbour_annotation`` (name, else InChIKey),
  ``neighbour_smiles``, ``neighbour_inchikey``, ``neighbour_node_id`` and ``neighbour_reliability``
  (edge predicted Tanimoto x the neighbour's annotation probability);
* ``edges.parquet``: ``source``, ``target`` (node ids), ``source_id`` / ``target_id`` (spectrum ids),
  ``predicted_tanimoto``, ``cosine`` (embeddings), ``mass_difference`` (target - source precursor m/z),
  ``cross_mode``, ``component``, and with a re-score ``modified_cosine`` or ``entropy`` plus
  ``matched_peaks``;
* ``network.graphml`` (typed attributes; missing values are left out) and ``network.cyjs``
  (Cytoscape.js JSON, ``elements.nodes`` / ``elements.edges``), both keyed by ``cluster_id``;
* ``gnps_pairs.tsv``: GNPS's ``networkedges_selfloop`` layout, tab-separated: ``CLUSTERID1``,
  ``CLUSTERID2``, ``DeltaMZ`` (precursor 1 - precursor 2), ``MEH`` and ``Cosine`` (both the edge score,
  predicted Tanimoto, where GNPS writes its cosine), ``OtherScore`` (the re-score when computed, else the
  embedding cosine), ``ComponentIndex``; singletons get a self-loop row with ``ComponentIndex`` -1, as
  GNPS writes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.core.peaks import Peaks
from engine.models.tanimoto_map import positive_mask
from engine.queries.network import Edges, rescore_edges
from indexes.network_store import NetworkStore

RESCORE_COLUMN = {"modified-cosine": "modified_cosine", "entropy": "entropy"}
PAIRS_FILE = "gnps_pairs.tsv"
PAIRS_COLUMNS = ("CLUSTERID1", "CLUSTERID2", "DeltaMZ", "MEH", "Cosine", "OtherScore", "ComponentIndex")


@dataclass
class Network:
    """A derived network: node table (store order), edges, component per node, neighbour annotation."""

    nodes: pa.Table
    edges: Edges
    component: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    neighbour: npt.NDArray[np.int64]
    neighbour_reliability: npt.NDArray[np.float32]

    @property
    def n_nodes(self) -> int:
        return self.nodes.num_rows


def cluster_ids(nodes: pa.Table) -> list[str]:
    """Feature ids when every node has a distinct one, else ``node_id + 1`` (GNPS numbers from 1)."""
    fids = nodes.column("feature_id").to_pylist()
    if fids and all(f is not None for f in fids) and len(set(fids)) == len(fids):
        return [str(f) for f in fids]
    return [str(i + 1) for i in nodes.column("node_id").to_numpy().tolist()]


def node_table(net: Network) -> pa.Table:
    """``nodes.parquet`` (see the module docstring)."""
    nodes = net.nodes
    n = net.n_nodes
    has = net.neighbour >= 0
    nb = np.where(has, net.neighbour, 0)

    def neighbour(col: str) -> pa.Array:
        values = pc.take(nodes.column(col), pa.array(nb, pa.int64())) if n else pa.array([], pa.string())
        return pc.if_else(pa.array(has), values, pa.nulls(n, pa.string()))

    name = neighbour("annotation_name")
    inchikey = neighbour("annotation_inchikey")
    cols: dict[str, Any] = {
        "node_id": nodes.column("node_id"), "cluster_id": pa.array(cluster_ids(nodes), pa.string()),
        "query_id": nodes.column("spectrum_id"),
    }
    for c in ("feature_id", "scan", "source_file", "record_index", "precursor_mz", "ion_mode", "retention_time",
              "quality"):
        cols[c] = nodes.column(c)
    cols["component"] = pa.array(net.component, pa.int64())
    cols["component_size"] = pa.array(net.size, pa.int64())
    for c in ("library_id", "name", "smiles", "inchikey", "probability"):
        cols[f"annotation_{c}"] = nodes.column(f"annotation_{c}")
    cols["neighbour_annotation"] = pc.coalesce(name, inchikey)
    cols["neighbour_smiles"] = neighbour("annotation_smiles")
    cols["neighbour_inchikey"] = inchikey
    cols["neighbour_node_id"] = pa.array(np.where(has, net.neighbour, 0), pa.int64(), mask=~has)
    cols["neighbour_reliability"] = pa.array(net.neighbour_reliability, pa.float32(), mask=~has)
    return pa.table(cols)


def edge_table(net: Network, store: NetworkStore | None, rescore: str, tolerance: float) -> pa.Table:
    """``edges.parquet`` (see the module docstring); ``store`` gives the peaks for a re-score."""
    e = net.edges
    prec = net.nodes.column("precursor_mz").to_numpy(zero_copy_only=False).astype(np.float64)
    modes = net.nodes.column("ion_mode").to_pylist()
    positive = positive_mask(modes, net.n_nodes) if net.n_nodes else np.zeros(0, bool)
    ids = net.nodes.column("spectrum_id")
    cols: dict[str, Any] = {
        "source": pa.array(e.source, pa.int64()), "target": pa.array(e.target, pa.int64()),
        "source_id": pc.take(ids, pa.array(e.source, pa.int64())) if len(e) else pa.array([], pa.string()),
        "target_id": pc.take(ids, pa.array(e.target, pa.int64())) if len(e) else pa.array([], pa.string()),
        "predicted_tanimoto": pa.array(e.score, pa.float32()), "cosine": pa.array(e.cosine, pa.float32()),
        "mass_difference": pa.array(prec[e.target] - prec[e.source], pa.float64()),
        "cross_mode": pa.array(positive[e.source] != positive[e.target], pa.bool_()),
        "component": pa.array(net.component[e.source], pa.int64()),
    }
    if rescore != "none":
        if store is None:
            raise ValueError("a re-score needs the store's peaks")
        peaks = Peaks.from_arrow(store.read_nodes(["mz", "intensity", "precursor_mz"]))
        score, matched = rescore_edges(peaks, e.source, e.target, rescore, tolerance=tolerance)
        cols[RESCORE_COLUMN[rescore]] = pa.array(score, pa.float32())
        cols["matched_peaks"] = pa.array(matched, pa.int32())
    return pa.table(cols)


def pairs_table(nodes: pa.Table, edges: pa.Table) -> pa.Table:
    """GNPS ``networkedges_selfloop`` rows: the edges, then one self-loop per singleton."""
    cid = np.asarray(nodes.column("cluster_id").to_pylist(), dtype=object)
    prec = nodes.column("precursor_mz").to_numpy(zero_copy_only=False).astype(np.float64)
    src = edges.column("source").to_numpy()
    tgt = edges.column("target").to_numpy()
    score = edges.column("predicted_tanimoto").to_numpy(zero_copy_only=False).astype(np.float64)
    other_col = next((c for c in RESCORE_COLUMN.values() if c in edges.column_names), "cosine")
    other = edges.column(other_col).to_numpy(zero_copy_only=False).astype(np.float64)
    comp = edges.column("component").to_numpy()
    single = np.flatnonzero(nodes.column("component").to_numpy() < 0)

    def col(values: npt.NDArray[Any]) -> pa.Array:
        return pa.array(np.round(values.astype(np.float64), 4).tolist(), pa.float64())

    return pa.table({
        "CLUSTERID1": pa.array(np.r_[cid[src], cid[single]].tolist(), pa.string()),
        "CLUSTERID2": pa.array(np.r_[cid[tgt], cid[single]].tolist(), pa.string()),
        "DeltaMZ": col(np.r_[prec[src] - prec[tgt], np.zeros(single.size)]),
        "MEH": col(np.r_[score, np.ones(single.size)]),
        "Cosine": col(np.r_[score, np.ones(single.size)]),
        "OtherScore": col(np.r_[other, np.ones(single.size)]),
        "ComponentIndex": pa.array(np.r_[comp, np.full(single.size, -1)].astype(np.int64)),
    })


def _clean(value: Any) -> Any:
    """A GraphML-safe attribute value, or None to leave it out."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def graph(nodes: pa.Table, edges: pa.Table) -> Any:
    """The network as a ``networkx.Graph`` keyed by ``cluster_id`` (typed attributes, no missing values)."""
    import networkx as nx

    g = nx.Graph()
    ids = nodes.column("cluster_id").to_pylist()
    for row in nodes.to_pylist():
        g.add_node(row["cluster_id"], **{k: c for k, v in row.items() if (c := _clean(v)) is not None})
    skip = {"source", "target"}
    for row in edges.to_pylist():
        attrs = {k: c for k, v in row.items() if k not in skip and (c := _clean(v)) is not None}
        g.add_edge(ids[row["source"]], ids[row["target"]], **attrs)
    return g


def write_network(out: Path, net: Network, store: NetworkStore | None, settings: Any, *,
                  graph_files: bool = True) -> None:
    """Write every network file into ``out`` (``settings``: a :class:`engine.jobs.network.NetworkSettings`)."""
    import pyarrow.csv as pacsv

    nodes = node_table(net)
    edges = edge_table(net, store, settings.rescore, settings.rescore_tolerance)
    pq.write_table(nodes, out / "nodes.parquet")
    pq.write_table(edges, out / "edges.parquet")
    pairs = pairs_table(nodes, edges)
    with open(out / PAIRS_FILE, "wb") as fh:
        fh.write(("\t".join(PAIRS_COLUMNS) + "\n").encode())
        pacsv.write_csv(pairs, fh, pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False))
    if graph_files:
        import networkx as nx

        g = graph(nodes, edges)
        nx.write_graphml(g, out / "network.graphml")
        (out / "network.cyjs").write_text(json.dumps(nx.cytoscape_data(g)))
    else:
        for name in ("network.graphml", "network.cyjs"):
            (out / name).unlink(missing_ok=True)
