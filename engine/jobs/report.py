"""An HTML report for a results file: score histogram and mirror plots, images embedded as base64 PNG.

The page is self-contained (no external files or scripts). Mirror plots show each query (top, blue)
against its top hit (bottom, red), peaks scaled to the base peak, and the peaks the modified cosine
pairs in colour; the rest grey. For candidate rankings (``engine rank``), fragment plots show each
query with the peaks its top candidate's in-silico fragments explain, coloured by cleavage steps
(:mod:`engine.queries.peak_annotation`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.core.records import Spectrum
from indexes.store import sql_quote

if TYPE_CHECKING:
    from engine.queries.peak_annotation import PeakAnnotation

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px} table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.plot{margin:14px 0 22px 0} .plot img{max-width:100%;border:1px solid #eee}
.smiles{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all;min-width:240px;max-width:360px}
"""


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def score_histogram_png(scores: npt.ArrayLike, top1: npt.ArrayLike | None = None, *, label: str = "score") -> str:
    """Histogram of all scores and of the top-1 scores, as base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    bins = np.linspace(min(lo, 0.0), max(hi, 1.0), 41).tolist()
    ax.hist(s, bins=bins, color="#9ecae1", label=f"all hits (n={s.size})")
    if top1 is not None:
        t = np.asarray(top1, dtype=float)
        t = t[np.isfinite(t)]
        ax.hist(t, bins=bins, color="#3182bd", alpha=0.85, label=f"top hit per query (n={t.size})")
    ax.set_xlabel(label)
    ax.set_ylabel("count")
    ax.legend(frameon=False, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)



def mirror_plot_png(query: Spectrum, hit: Spectrum, *, title: str = "", tolerance: float = 0.02) -> str:
    """Mirror plot of ``query`` (up) against ``hit`` (down), matched peaks coloured, as base64 PNG."""
    from matplotlib.figure import Figure

    from engine.core.peaks import Peaks
    from engine.queries.similarity import matched_peaks

    qa, ha = Peaks.from_spectra([query]), Peaks.from_spectra([hit])
    modified = query.precursor_mz is not None and hit.precursor_mz is not None
    _, mq, mh = matched_peaks(qa, ha, [0], [0], tolerance=tolerance, modified=modified)
    q_int = query.intensity / max(float(query.intensity.max()), 1e-12) if query.n_peaks else query.intensity
    h_int = hit.intensity / max(float(hit.intensity.max()), 1e-12) if hit.n_peaks else hit.intensity
    q_match = np.zeros(query.n_peaks, dtype=bool)
    q_match[mq] = True
    h_match = np.zeros(hit.n_peaks, dtype=bool)
    h_match[mh] = True

    fig = Figure(figsize=(8.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for mz, inten, match, sign, colour in ((query.mz, q_int, q_match, 1.0, "#1f77b4"),
                                           (hit.mz, h_int, h_match, -1.0, "#d62728")):
        ax.vlines(mz[~match], 0, sign * inten[~match], color="#aaaaaa", linewidth=1.0)
        ax.vlines(mz[match], 0, sign * inten[match], color=colour, linewidth=1.4)
    ax.axhline(0, color="#333333", linewidth=0.8)
    for prec, sign in ((query.precursor_mz, 1.0), (hit.precursor_mz, -1.0)):
        if prec is not None:
            ax.plot([prec], [sign * 1.04], marker="v" if sign > 0 else "^", color="#555555", markersize=5)
    top = max([float(query.mz.max()) if query.n_peaks else 0.0, float(hit.mz.max()) if hit.n_peaks else 0.0,
               query.precursor_mz or 0.0, hit.precursor_mz or 0.0])
    ax.set_xlim(0, top * 1.05 + 5)
    ax.set_ylim(-1.12, 1.12)
    ax.set_yticks([-1, -0.5, 0, 0.5, 1])
    ax.set_yticklabels(["100", "50", "0", "50", "100"])
    ax.set_xlabel("m/z")
    ax.set_ylabel("relative intensity (%)")
    ax.text(0.01, 0.97, f"query: {query.spectrum_id}", transform=ax.transAxes, fontsize=8, va="top",
            color="#1f77b4")
    ax.text(0.01, 0.03, f"hit: {hit.spectrum_id}", transform=ax.transAxes, fontsize=8, va="bottom",
            color="#d62728")
    if title:
        ax.set_title(_wrap(title), fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


_STEP_COLOURS = {0: ("#2ca02c", "intact molecule"), 1: ("#1f77b4", "1 cleavage step"),
                 2: ("#9467bd", "2 cleavage steps")}


def fragment_plot_png(query: Spectrum, annotation: PeakAnnotation, *, title: str = "", labels: int = 8,
                      margin_da: float = 1.5) -> str:
    """The query's peaks (relative intensity), those the candidate's fragments explain coloured by
    cleavage steps and the ``labels`` most intense of them labelled with m/z, steps and hydrogen shift;
    the precursor region (``margin_da`` below the precursor m/z: not scored) shaded. Base64 PNG."""
    from matplotlib.figure import Figure

    base = max(float(query.intensity.max()), 1e-12) if query.n_peaks else 1.0
    fig = Figure(figsize=(8.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.vlines(query.mz, 0, query.intensity / base, color="#bbbbbb", linewidth=1.0, label="not explained")
    rel = annotation.intensity / base
    for steps, (colour, label) in _STEP_COLOURS.items():
        sel = annotation.explained & (annotation.steps == steps)
        if sel.any():
            ax.vlines(annotation.mz[sel], 0, rel[sel], color=colour, linewidth=1.6, label=label)
    scored = annotation.weight > 0
    if query.precursor_mz is not None:
        ax.axvspan(float(query.precursor_mz) - margin_da, float(query.precursor_mz) + 3, color="#ececec", zorder=0,
                   label="precursor region (not scored)")
    top = np.flatnonzero(annotation.explained & scored)
    right = max(float(query.mz.max()) if query.n_peaks else 0.0, query.precursor_mz or 0.0)
    placed: list[float] = []
    for i in top[np.argsort(-rel[top])]:
        if len(placed) >= labels or any(abs(annotation.mz[i] - x) < 0.04 * right for x in placed):
            continue   # keep labels apart
        placed.append(float(annotation.mz[i]))
        steps, shift = int(annotation.steps[i]), int(annotation.shift[i])
        text = f"{annotation.mz[i]:.4f}\n{steps} step{'s' if steps != 1 else ''}" + (f" {shift:+d}H" if shift else "")
        ax.annotate(text, (annotation.mz[i], rel[i]), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7, color="#333333")
    if query.precursor_mz is not None:
        ax.plot([query.precursor_mz], [1.06], marker="v", color="#555555", markersize=5)
    ax.set_xlim(0, right * 1.05 + 5)
    ax.set_ylim(0, 1.32)
    ax.set_xlabel("m/z")
    ax.set_ylabel("relative intensity")
    ax.legend(frameon=False, fontsize=7, loc="upper left", ncol=5, handlelength=1.2, columnspacing=1.0)
    if title:
        ax.set_title(_wrap(title), fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _wrap(title: str, width: int = 110) -> str:
    """A plot title broken into lines that fit the figure (query ids and SMILES can be long)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width, break_long_words=True)) or title


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def load_spectra(sources: Iterable[str | Path], ids: Iterable[str]) -> dict[str, Spectrum]:
    """Spectra with the given ids from spectrum files / globs / directories, or LanceDB directories with
    a ``spectra`` table (a library or store). Ids not found are simply absent from the result."""
    wanted = set(ids)
    found: dict[str, Spectrum] = {}
    for source in sources:
        if not wanted - found.keys():
            break
        path = Path(source)
        if path.is_dir() and _lance_root(path) is not None:
            found.update(_from_lance(_lance_root(path), wanted - found.keys()))  # type: ignore[arg-type]
            continue
        from engine.io.inputs import expand_inputs
        from engine.io.stream import read_valid_spectra

        for file in expand_inputs([source]):
            for spectrum in read_valid_spectra(file, on_invalid="skip"):
                if spectrum.spectrum_id in wanted:
                    found.setdefault(spectrum.spectrum_id, spectrum)
    return found


def _lance_root(path: Path) -> Path | None:
    """The directory holding ``spectra.lance`` (``path`` itself or one level down), if any."""
    if (path / "spectra.lance").exists():
        return path
    for child in sorted(path.iterdir()):
        if child.is_dir() and (child / "spectra.lance").exists():
            return child
    return None


def _from_lance(root: Path, ids: set[str]) -> dict[str, Spectrum]:
    import lancedb

    from engine.core.schema import SPECTRUM_COLUMNS, batch_to_spectra

    if not ids:
        return {}
    table = lancedb.connect(str(root)).open_table("spectra")
    cols = [c for c in SPECTRUM_COLUMNS if c in table.schema.names]
    out: dict[str, Spectrum] = {}
    id_list = sorted(ids)
    for start in range(0, len(id_list), 500):
        chunk = id_list[start:start + 500]
        quoted = ", ".join(sql_quote(i) for i in chunk)
        rows = table.search().where(f"spectrum_id IN ({quoted})").select(cols).limit(len(chunk) * 4).to_arrow()
        for s in batch_to_spectra(rows):
            out.setdefault(s.spectrum_id, s)
    return out


#: Rows of the hit table at most: the highest-scoring top hits (the page states how many there are).
MAX_TABLE_ROWS = 1000


def _scores(table: pa.Table) -> npt.NDArray[np.float64]:
    if "score" not in table.column_names:
        return np.full(table.num_rows, np.nan)
    return np.asarray(table.column("score").to_numpy(zero_copy_only=False), dtype=float)


def _top_rows(table: pa.Table) -> npt.NDArray[np.int64]:
    """Indices of the rank-1 rows (every row when there is no rank column)."""
    if "rank" not in table.column_names:
        return np.arange(table.num_rows)
    rank = np.asarray(table.column("rank").to_numpy(zero_copy_only=False), dtype=float)
    return np.flatnonzero(rank == 1)


def by_score(score: npt.NDArray[np.float64], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``rows`` from the highest score to the lowest (rows without a score last)."""
    key = np.where(np.isfinite(score[rows]), -score[rows], np.inf)
    return rows[np.argsort(key, kind="stable")]


def plot_rows(score: npt.NDArray[np.float64], rows: npt.NDArray[np.int64], max_plots: int) -> list[int]:
    """The rows to plot, chosen by score: the most confident first, then a few of the least confident (a
    tenth of ``max_plots``, 1 to 5) so that a reader sees both ends; every row when there are few."""
    ordered = by_score(score, rows)
    if max_plots <= 0:
        return []
    if len(ordered) <= max_plots:
        return ordered.tolist()
    scored = ordered[np.isfinite(score[ordered])]
    n_least = min(5, max(1, max_plots // 10)) if max_plots >= 4 and len(scored) > max_plots else 0
    least = scored[len(scored) - n_least:][::-1].tolist() if n_least else []
    return ordered[:max_plots - n_least].tolist() + least


def build_report(results: pa.Table, *, queries: Mapping[str, Spectrum] | None = None,
                 library: Mapping[str, Spectrum] | None = None, max_plots: int = 50,
                 title: str = "Search report", source: str = "", candidates: pa.Table | None = None,
                 summary: str = "", max_table_rows: int = MAX_TABLE_ROWS) -> str:
    """Render the report page for ``results`` (a search or rank results table) as an HTML string;
    ``candidates`` (a rank results table, for an annotation job) adds its fragment plots.

    The page stays small whatever the number of results: the hit table lists the ``max_table_rows``
    highest-scoring top hits (and says how many there are), and plots are chosen by score
    (:func:`plot_rows`)."""
    queries = queries or {}
    library = library or {}
    cols = results.column_names
    n = results.num_rows
    score = _scores(results)
    top_rows = _top_rows(results)
    n_queries = len(pc.unique(results.column("query_id"))) if "query_id" in cols else 0

    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(source)} &middot; {n_queries} queries, {n} result rows</p>"]
    if summary:
        parts.append(f"<p>{html.escape(summary)}</p>")
    parts.append("<h2>Scores</h2>")
    if n:
        parts.append(f"<img alt='score histogram' src='data:image/png;base64,"
                     f"{score_histogram_png(score, score[top_rows])}'>")
        if len(top_rows):
            q = np.nanquantile(score[top_rows], [0.1, 0.5, 0.9]) if np.isfinite(score[top_rows]).any() else [np.nan] * 3
            parts.append(f"<p class='meta'>top-hit score: 10% {q[0]:.3f}, median {q[1]:.3f}, 90% {q[2]:.3f}</p>")
    else:
        parts.append("<p>No results.</p>")

    show = [c for c in ("query_id", "rank", "score", "name", "library_id", "inchikey", "smiles",
                        "precursor_mz", "mass_difference", "quality", "formula") if c in cols]
    listed = by_score(score, top_rows)[:max(max_table_rows, 0)]
    heading = "Top hits" if len(listed) == len(top_rows) else \
        f"Top hits (the {len(listed):,} highest-scoring of {len(top_rows):,})"
    parts.append(f"<h2>{heading}</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in show) + "</tr>")
    shown = results.select(show).take(pa.array(listed, pa.int64())).to_pydict()
    for j in range(len(listed)):
        cells = []
        for c in show:
            v = shown[c][j]
            cls = " class='num'" if isinstance(v, (int, float)) else (" class='smiles'" if c == "smiles" else "")
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    if len(listed) < len(top_rows):
        parts.append(f"<p class='meta'>{len(top_rows) - len(listed):,} more top hits are in {html.escape(source)}"
                     f"</p>")

    if "library_id" in cols:
        chosen = plot_rows(score, top_rows, max_plots)
        data = _rows(results, chosen, ("query_id", "library_id", "name", "mass_difference"))

        def mirror(i: int) -> tuple[str, str] | None:
            q, h = queries.get(data["query_id"][i]), library.get(data["library_id"][i])
            if q is None or h is None:
                return None
            name = data["name"][i] or data["library_id"][i]
            caption = f"{q.spectrum_id} vs {name} — score {score[i]:.3f}"
            if data["mass_difference"][i] is not None:
                caption += f", Δm {data['mass_difference'][i]:+.4f}"
            return f"mirror plot {q.spectrum_id}", mirror_plot_png(q, h, title=caption)

        parts += _plot_section(f"Mirror plots (top hits by score, most confident first, at most {max_plots})",
                               chosen, max_plots, mirror,
                               "top hits not plotted: query or library spectrum not found (give --queries and "
                               "--library).")
    elif "smiles" in cols:
        parts += _fragment_plots(results, queries, max_plots)
    if candidates is not None and candidates.num_rows:
        parts += _fragment_plots(candidates, queries, max_plots)
    parts.append("</body></html>")
    return "\n".join(parts)


def _rows(table: pa.Table, rows: Sequence[int], columns: Sequence[str]) -> dict[str, dict[int, Any]]:
    """``columns`` of the given rows, as column -> row index -> value (absent columns give None)."""
    present = [c for c in columns if c in table.column_names]
    taken = table.select(present).take(pa.array(list(rows), pa.int64())).to_pydict() if rows else {}
    return {c: {i: (taken[c][j] if c in taken else None) for j, i in enumerate(rows)} for c in columns}


def _fragment_plots(ranked: pa.Table, queries: Mapping[str, Spectrum], max_plots: int) -> list[str]:
    """Fragment plots of each query against its top candidate (rows of rank 1 of a rank results table)."""
    from engine.queries.fragments import FragmentScorer
    from engine.queries.peak_annotation import annotate_spectrum

    score = _scores(ranked)
    rows = plot_rows(score, _top_rows(ranked), max_plots)
    data = _rows(ranked, rows, ("query_id", "smiles"))
    scorer = FragmentScorer()

    def fragments(i: int) -> tuple[str, str] | None:
        q = queries.get(data["query_id"][i])
        annotation = annotate_spectrum(scorer, q, str(data["smiles"][i])) if q is not None else None
        if q is None or annotation is None:
            return None
        caption = (f"{q.spectrum_id}: {data['smiles'][i]} — score {score[i]:.3f}, "
                   f"explained share {annotation.explained_share:.2f}")
        return f"fragment plot {q.spectrum_id}", fragment_plot_png(
            q, annotation, title=caption, margin_da=scorer.settings.precursor_margin_da)

    return _plot_section(f"Fragment annotation (top candidates by score, most confident first, at most "
                         f"{max_plots})", rows, max_plots, fragments,
                         "top candidates not plotted: query spectrum not found (give --queries) or SMILES not "
                         "parsed.")


def _plot_section(heading: str, rows: list[int], max_plots: int, render: Callable[[int], tuple[str, str] | None],
                  missing_note: str) -> list[str]:
    """A heading and one plot per row (``render`` gives alt text and base64 PNG, or None when it cannot),
    at most ``max_plots``, then how many could not be drawn."""
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    plotted, missing = 0, 0
    for i in rows:
        if plotted >= max_plots:
            break
        drawn = render(i)
        if drawn is None:
            missing += 1
            continue
        alt, png = drawn
        parts.append(f"<div class='plot'><img alt='{html.escape(alt)}' src='data:image/png;base64,{png}'></div>")
        plotted += 1
    if missing:
        parts.append(f"<p class='meta'>{missing} {html.escape(missing_note)}</p>")
    return parts


def write_report(results_path: str | Path, out: str | Path, *, queries: Sequence[str | Path] = (),
                 library: Sequence[str | Path] = (), max_plots: int = 50) -> Path:
    """Read ``results_path`` (a search or rank results file, or an ``engine annotate`` output directory),
    fetch the spectra to plot, and write the HTML page to ``out``."""
    candidates: pa.Table | None = None
    summary = ""
    job = annotate_output(Path(results_path))
    if job is not None:
        results, candidates, sources, job_library, summary = read_annotate_output(job)
        queries = queries or sources
        library = library or ([job_library] if job_library else [])
        title = f"Annotation report: {job.name}"
    else:
        results = pq.read_table(str(results_path))
        title = f"Report: {Path(results_path).name}"
    chosen = _rows(results, plot_rows(_scores(results), _top_rows(results), max_plots), ("query_id", "library_id"))
    q_ids = {v for v in chosen["query_id"].values() if v is not None}
    if candidates is not None and candidates.num_rows:
        picked = _rows(candidates, plot_rows(_scores(candidates), _top_rows(candidates), max_plots), ("query_id",))
        q_ids |= {v for v in picked["query_id"].values() if v is not None}
    l_ids = {v for v in chosen["library_id"].values() if v is not None}
    q_spectra = load_spectra(queries, q_ids) if queries else {}
    l_spectra = load_spectra(library, l_ids) if library else {}
    page = build_report(results, queries=q_spectra, library=l_spectra, max_plots=max_plots, title=title,
                        source=str(results_path), candidates=candidates, summary=summary)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path


def annotate_output(path: Path) -> Path | None:
    """The ``engine annotate`` output directory ``path`` is or lies in (its ``results`` folder), else None."""
    if not path.is_dir():
        return None
    return next((d for d in (path, path.parent) if (d / "job.json").is_file() and (d / "results").is_dir()), None)


def read_annotate_output(out_dir: Path) -> tuple[pa.Table, pa.Table, list[str], str | None, str]:
    """An annotation job's library matches as a search results table and its ranked candidates as a rank
    results table (one row per spectrum that has one), the query files and library it read, and a
    one-line summary."""
    import json

    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    dataset = pads.dataset(str(out_dir / "results"), format="parquet", partitioning="hive")
    wanted = ("query_id", "source_file", "quality", "identity_score", "identity_library_id", "identity_name",
              "identity_inchikey", "identity_smiles", "candidate_score", "candidate_smiles", "candidate_inchikey",
              "candidate_formula")
    table = dataset.to_table(columns=[c for c in wanted if c in dataset.schema.names])  # not the embeddings
    names = table.column_names

    def rows(prefix_key: str, columns: dict[str, str]) -> pa.Table:
        if prefix_key not in names:
            return pa.table({"query_id": pa.array([], pa.string())})
        hit = table.filter(pc.is_valid(table.column(prefix_key)))
        out = {new: hit.column(old) for new, old in columns.items() if old in names}
        return pa.table({"query_id": hit.column("query_id"), "rank": pa.array([1] * hit.num_rows, pa.int32()),
                         **out})

    identity = rows("identity_library_id", {"score": "identity_score", "library_id": "identity_library_id",
                                            "name": "identity_name", "inchikey": "identity_inchikey",
                                            "smiles": "identity_smiles", "quality": "quality"})
    candidates = rows("candidate_smiles", {"score": "candidate_score", "smiles": "candidate_smiles",
                                           "inchikey": "candidate_inchikey", "formula": "candidate_formula"})
    sources = sorted({str(s) for s in table.column("source_file").to_pylist() if s and Path(s).exists()}
                     ) if "source_file" in names else []
    job = json.loads((out_dir / "job.json").read_text())
    job_library = job.get("fingerprint", {}).get("library")
    summary = ""
    if (out_dir / "summary.json").is_file():
        info = json.loads((out_dir / "summary.json").read_text())
        summary = (f"{info.get('annotated', table.num_rows)} spectra annotated, "
                   f"{info.get('flagged_low_quality', 0)} flagged low quality, "
                   f"{info.get('identity_hits', identity.num_rows)} library matches "
                   f"({info.get('identity_hits_probable', '?')} with probability >= 0.5), "
                   f"{candidates.num_rows} with a ranked candidate structure.")
    return identity, candidates, sources, job_library if job_library and Path(job_library).exists() else None, summary
