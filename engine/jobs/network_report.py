"""The HTML report of an ``engine network`` output: largest components, component sizes, an edge's mirror plot.

Images are matplotlib PNGs embedded as base64, so the page opens offline with no script. Components are
drawn with a seeded spring layout: nodes coloured by ion mode (positive blue, negative orange),
library-annotated nodes labelled with their name, cross-mode edges red and thicker, other edges grey
with width by predicted Tanimoto. The mirror plot shows the two spectra of one edge (``edge`` = the two
node ids, cluster ids or spectrum ids; default: the highest-scoring edge).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.records import Spectrum
from engine.jobs.report import _CSS, _png, mirror_plot_png
from indexes.network_store import read_node_rows

MODE_COLOURS = {"positive": "#1f77b4", "negative": "#ff7f0e"}
CROSS_COLOUR = "#d62728"


def is_network_output(path: str | Path) -> bool:
    """True for an ``engine network`` output directory."""
    p = Path(path)
    return p.is_dir() and (p / "nodes.parquet").is_file() and (p / "edges.parquet").is_file() \
        and (p / "network.json").is_file()


def components_png(nodes: pa.Table, edges: pa.Table, components: list[int], *, label_chars: int = 22) -> str:
    """The given components side by side (at most 6), as base64 PNG."""
    import networkx as nx
    from matplotlib.figure import Figure

    comp = nodes.column("component").to_numpy()
    modes = nodes.column("ion_mode").to_pylist()
    names = nodes.column("annotation_name").to_pylist()
    src, tgt = edges.column("source").to_numpy(), edges.column("target").to_numpy()
    score = edges.column("predicted_tanimoto").to_numpy(zero_copy_only=False)
    cross = edges.column("cross_mode").to_numpy(zero_copy_only=False)
    shown = components[:6]
    cols = min(3, max(len(shown), 1))
    rows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows))
    for k, c in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        members = np.flatnonzero(comp == c)
        sel = np.flatnonzero(comp[src] == c)
        g = nx.Graph()
        g.add_nodes_from(members.tolist())
        g.add_edges_from(zip(src[sel].tolist(), tgt[sel].tolist(), strict=True))
        pos = nx.spring_layout(g, seed=0, k=1.5 / max(np.sqrt(len(members)), 1))
        for e in sel:
            (x0, y0), (x1, y1) = pos[int(src[e])], pos[int(tgt[e])]
            ax.plot([x0, x1], [y0, y1], color=CROSS_COLOUR if cross[e] else "#999999",
                    linewidth=2.2 if cross[e] else 0.4 + 2.0 * float(score[e]), alpha=0.9, zorder=1)
        xy = np.array([pos[int(i)] for i in members])
        colours = [MODE_COLOURS.get(modes[i] or "positive", "#777777") for i in members]
        ax.scatter(xy[:, 0], xy[:, 1], s=36, c=colours, edgecolors="white", linewidths=0.6, zorder=2)
        for i, (x, y) in zip(members, xy, strict=True):
            if names[i]:
                ax.annotate(str(names[i])[:label_chars], (x, y), fontsize=6.5, xytext=(3, 3),
                            textcoords="offset points", zorder=3)
        n_cross = int(cross[sel].sum())
        ax.set_title(f"component {c}: {len(members)} nodes, {sel.size} edges ({n_cross} cross-mode)", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return _png(fig)


def size_histogram_png(nodes: pa.Table) -> str:
    """Histogram of component sizes (singletons as size 1), as base64 PNG."""
    from matplotlib.figure import Figure

    comp = nodes.column("component").to_numpy()
    sizes = np.bincount(comp[comp > 0])[1:] if (comp > 0).any() else np.zeros(0, np.int64)
    sizes = np.r_[sizes[sizes > 0], np.ones(int((comp < 0).sum()), np.int64)]
    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    top = int(sizes.max()) if sizes.size else 1
    ax.hist(sizes, bins=np.arange(0.5, top + 1.5, max(1, top // 40)).tolist(), color="#3182bd")
    ax.set_xlabel("component size (nodes)")
    ax.set_ylabel("components")
    ax.set_yscale("log")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def find_edge(nodes: pa.Table, edges: pa.Table, edge: tuple[str, str] | None) -> int | None:
    """Row of ``edge`` (spectrum ids, cluster ids as in the graph files, or node ids; either order) or of
    the top edge."""
    if edges.num_rows == 0:
        return None
    if edge is None:
        return int(np.argmax(edges.column("predicted_tanimoto").to_numpy(zero_copy_only=False)))
    ids = nodes.column("node_id").to_numpy().tolist()
    lookup: dict[str, int] = {}
    for col in ("node_id", "cluster_id", "query_id"):  # later columns win: spectrum id, then cluster id
        for i, v in zip(ids, nodes.column(col).to_pylist(), strict=True):
            lookup[str(v)] = int(i)
    a, b = (lookup.get(str(x).strip()) for x in edge)
    if a is None or b is None:
        raise ValueError(f"edge {edge[0]},{edge[1]}: no such node")
    src, tgt = edges.column("source").to_numpy(), edges.column("target").to_numpy()
    hit = np.flatnonzero(((src == a) & (tgt == b)) | ((src == b) & (tgt == a)))
    if hit.size == 0:
        raise ValueError(f"no edge between {edge[0]} and {edge[1]}")
    return int(hit[0])


def _spectra(store: Path, node_ids: list[int]) -> dict[int, Spectrum]:
    rows = read_node_rows(store, node_ids, ["node_id", "spectrum_id", "mz", "intensity", "precursor_mz",
                                            "ion_mode"]).to_pylist()
    return {r["node_id"]: Spectrum(spectrum_id=r["spectrum_id"], mz=np.asarray(r["mz"], np.float64),
                                   intensity=np.asarray(r["intensity"], np.float32),
                                   precursor_mz=r["precursor_mz"], ion_mode=r["ion_mode"]) for r in rows}


def build_network_report(out_dir: Path, *, edge: tuple[str, str] | None = None, n_components: int = 6) -> str:
    """The report page for the network in ``out_dir`` as an HTML string."""
    nodes = pq.read_table(out_dir / "nodes.parquet")
    edges = pq.read_table(out_dir / "edges.parquet")
    summary = json.loads((out_dir / "summary.json").read_text()) if (out_dir / "summary.json").is_file() else {}
    title = f"Network report: {out_dir.name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(str(out_dir))}</p>"]
    facts = [("nodes", summary.get("nodes", nodes.num_rows)), ("edges", summary.get("edges", edges.num_rows)),
             ("cross-mode edges", summary.get("cross_mode_edges")), ("components", summary.get("components")),
             ("singletons", summary.get("singletons")), ("library-annotated nodes", summary.get("annotated_nodes")),
             ("annotated through a neighbour", summary.get("neighbour_annotated_nodes")),
             ("skipped records", summary.get("skipped")),
             ("min score (predicted Tanimoto)", summary.get("settings", {}).get("min_score"))]
    parts.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td class='num'>{html.escape(str(v))}</td></tr>"
                                     for k, v in facts if v is not None) + "</table>")
    if summary.get("note"):
        parts.append(f"<p>{html.escape(str(summary['note']))}</p>")
    comp = nodes.column("component").to_numpy() if nodes.num_rows else np.zeros(0, np.int64)
    largest = sorted({int(c) for c in comp if c > 0})[:n_components]
    parts.append("<h2>Largest components</h2>")
    if largest:
        parts.append("<p class='meta'>blue: positive mode, orange: negative mode; red edges connect the two "
                     "modes; grey edge width grows with predicted Tanimoto; labels: library annotations.</p>")
        parts.append(f"<div class='plot'><img alt='largest components' src='data:image/png;base64,"
                     f"{components_png(nodes, edges, largest)}'></div>")
    else:
        parts.append("<p>No component with an edge.</p>")
    parts.append("<h2>Component sizes</h2>")
    if nodes.num_rows:
        parts.append(f"<div class='plot'><img alt='component sizes' src='data:image/png;base64,"
                     f"{size_histogram_png(nodes)}'></div>")
    row = find_edge(nodes, edges, edge)
    parts.append("<h2>Edge</h2>")
    if row is None:
        parts.append("<p>No edge to plot.</p>")
    else:
        e: dict[str, Any] = edges.slice(row, 1).to_pylist()[0]
        spectra = _spectra(out_dir / "store", [e["source"], e["target"]])
        if len(spectra) == 2:
            caption = (f"{e['source_id']} vs {e['target_id']}: predicted Tanimoto {e['predicted_tanimoto']:.3f}, "
                       f"cosine {e['cosine']:.3f}, Δm/z {e['mass_difference']:+.4f}"
                       + (", cross-mode" if e["cross_mode"] else ""))
            parts.append(f"<p>{html.escape(caption)}</p>")
            parts.append(f"<div class='plot'><img alt='mirror plot' src='data:image/png;base64,"
                         f"{mirror_plot_png(spectra[e['source']], spectra[e['target']], title=caption)}'></div>")
        else:
            parts.append("<p>The spectra of this edge are not in the network's store.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_network_report(out_dir: str | Path, out: str | Path, *, edge: tuple[str, str] | None = None) -> Path:
    """Write the report of the network in ``out_dir`` to the HTML file ``out``."""
    page = build_network_report(Path(out_dir), edge=edge)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
