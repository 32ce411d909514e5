"""Search benchmark on val: identity and analogue search beside Flash entropy search and matchms.

Sets (see :mod:`benchmarks.search.data`): identity = one val spectrum per (structure, ion mode) with
>= 2 spectra against train + the other val spectra; analogue = every val spectrum against train. All
methods see the same library and queries and search within the query's ion mode. Metrics: identity
top-1 accuracy (InChIKey first block), analogue mean Tanimoto between the top hit's and the query's
structure (RDKit fingerprint, 2048 bits; a query without a hit counts 0), and queries/s on this
machine, one process (ours: embedding + index search + exact re-scoring + annotation; Flash: cleaning
+ search; matchms: scoring only).

Usage: ``python benchmarks/search/run.py [--model CKPT] [--analogue-subsample 1000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also runnable as a script

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from benchmarks._results import markdown_table, write_results
from benchmarks.search import peers
from benchmarks.search.common import build_library, embed
from benchmarks.search.data import fingerprints, load_sets, tanimoto
from engine.models.calibration import reliability_table
from engine.queries.analogue import AnalogueSettings, analogue_search
from engine.queries.identity import IdentitySettings, identity_search

HERE = Path(__file__).resolve().parent


def run_ours(kind: str, table: pa.Table, queries: npt.NDArray[np.int64], index: Any, refs: Any, model: Any,
             batch_size: int = 1024) -> tuple[pa.Table, float]:
    """Our search over ``queries`` (table rows) in batches, timed end to end (embedding included)."""
    parts = []
    start = time.perf_counter()
    for s in range(0, len(queries), batch_size):
        batch = table.take(pa.array(queries[s:s + batch_size]))
        if kind == "identity":
            parts.append(identity_search(batch, index, refs, model, settings=IdentitySettings(top_k=10)))
        else:
            parts.append(analogue_search(batch, index, refs, model, settings=AnalogueSettings(top_k=10)))
    return pa.concat_tables(parts), time.perf_counter() - start


def top1_rows(result: pa.Table, table: pa.Table, queries: npt.NDArray[np.int64]
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(top-1 library row or -1, its score, query quality) per query, from a results table."""
    pos = {sid: i for i, sid in enumerate(table.column("spectrum_id").to_pylist())}
    qpos = {int(q): j for j, q in enumerate(queries)}
    top1 = np.full(len(queries), -1, dtype=np.int64)
    score = np.zeros(len(queries))
    quality = np.full(len(queries), np.nan)
    for r in result.filter(pa.compute.equal(result.column("rank"), 1)).to_pylist():
        j = qpos[pos[r["query_id"]]]
        top1[j], score[j], quality[j] = pos[r["library_id"]], r["score"], r["quality"]
    return top1, score, quality


def identity_accuracy(top1: npt.NDArray[np.int64], queries: npt.NDArray[np.int64],
                      keys: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    return (top1 >= 0) & (keys[np.maximum(top1, 0)] == keys[queries])


def top1_tanimoto(top1: npt.NDArray[np.int64], queries: npt.NDArray[np.int64], fps: npt.NDArray[np.uint8],
                  struct: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    t = tanimoto(fps[struct[queries]], fps[struct[np.maximum(top1, 0)]])
    return np.where(top1 >= 0, t, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--analogue-subsample", type=int, default=500,
                        help="val queries (seeded) for the matchms all-precursor comparison")
    parser.add_argument("--matchms-timing-queries", type=int, default=20)
    parser.add_argument("--skip-flash-analogue", action="store_true")
    args = parser.parse_args()
    from engine.models.model import load_model

    model = load_model(args.model)
    sets = load_sets()
    table = sets.spectra
    keys = np.asarray(table.column("inchikey14").to_pylist(), dtype=object)
    smiles = np.asarray(table.column("smiles").to_pylist(), dtype=object).astype(str)
    uniq, struct = np.unique(smiles, return_inverse=True)
    fps = fingerprints(uniq.tolist())
    emb, quality, embed_s = embed(model, table)
    print(f"embedded {table.num_rows} spectra in {embed_s:.1f} s ({table.num_rows / embed_s:,.0f}/s)")
    data: dict[str, Any] = {"model": str(args.model or "bundled default"), "encoder_hash": model.encoder_hash,
                            "embedding_spectra_per_s": table.num_rows / embed_s}
    rows_id: list[dict[str, Any]] = []
    rows_an: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory() as tmp:
        # ---------------------------------------------------------------- identity
        q = sets.identity_queries
        index, refs, build_s = build_library(Path(tmp) / "identity", table, sets.identity_library, emb, quality,
                                             encoder_hash=model.encoder_hash)
        refs.prepare()  # the library's cached re-scoring forms, outside the timing (like Flash's index build)
        flash = peers.FlashLibrary(table, sets.identity_library)
        # speed: ours and Flash identity alternately, best of three (the machine is shared)
        ours_s, flash_s = [], []
        for _ in range(3):
            result, secs = run_ours("identity", table, q, index, refs, model)
            ours_s.append(secs)
            flash_res = flash.search(q, "identity")
            flash_s.append(flash_res.seconds)
        top1, score, _ = top1_rows(result, table, q)
        ok = identity_accuracy(top1, q, keys)
        rows_id.append({"method": "engine identity (embedding window + entropy re-score, calibrated)",
                        "top1_accuracy": float(ok.mean()), "queries_per_s": len(q) / min(ours_s)})
        data["identity_reliability"] = reliability_table(score[top1 >= 0], ok[top1 >= 0])
        data["identity_library_build_s"] = build_s
        data["identity_timings_s"] = {"ours": ours_s, "flash_identity": flash_s}
        print(rows_id[-1])
        for method in ("identity", "open", "hybrid"):
            res = flash_res if method == "identity" else flash.search(q, method)
            secs = min(flash_s) if method == "identity" else res.seconds
            rows_id.append({"method": res.name, "top1_accuracy": float(identity_accuracy(res.top1, q, keys).mean()),
                            "queries_per_s": len(q) / secs})
            print(rows_id[-1])
        for res in peers.matchms_identity(table, sets.identity_library, q).values():
            rows_id.append({"method": res.name, "top1_accuracy": float(identity_accuracy(res.top1, q, keys).mean()),
                            "queries_per_s": res.queries_per_second})
            print(rows_id[-1])
        data["identity"] = {"queries": len(q), "library": len(sets.identity_library), "rows": rows_id}

        # ---------------------------------------------------------------- analogue
        q = sets.analogue_queries
        sub = np.sort(np.random.default_rng(3).choice(len(q), min(args.analogue_subsample, len(q)), replace=False))
        index, refs, build_s = build_library(Path(tmp) / "analogue", table, sets.train_rows, emb, quality,
                                             encoder_hash=model.encoder_hash)
        refs.prepare()
        result, secs = run_ours("analogue", table, q, index, refs, model)
        top1, score, qual = top1_rows(result, table, q)
        tani = top1_tanimoto(top1, q, fps, struct)
        rows_an.append({"method": "engine analogue (embedding kNN + features, calibrated reliability)",
                        "mean_top1_tanimoto": float(tani.mean()), "subsample_top1_tanimoto": float(tani[sub].mean()),
                        "queries_per_s": len(q) / secs})
        print(rows_an[-1])
        quart = np.nanquantile(qual, [0.25, 0.5, 0.75])
        bins = np.digitize(qual, quart)
        data["analogue_by_quality"] = [
            {"quality_quartile": int(b + 1), "n": int((bins == b).sum()),
             "mean_quality": float(np.nanmean(qual[bins == b])), "mean_reliability": float(score[bins == b].mean()),
             "mean_top1_tanimoto": float(tani[bins == b].mean())} for b in range(4)]
        data["analogue_reliability"] = reliability_table(score, tani)
        if not args.skip_flash_analogue:
            for res in peers.flash_search(table, sets.train_rows, q, methods=("open", "hybrid")).values():
                t = top1_tanimoto(res.top1, q, fps, struct)
                rows_an.append({"method": res.name, "mean_top1_tanimoto": float(t.mean()),
                                "subsample_top1_tanimoto": float(t[sub].mean()),
                                "queries_per_s": res.queries_per_second})
                print(rows_an[-1])
        for res in peers.vectorised_open(table, sets.train_rows, q[sub]).values():
            t = top1_tanimoto(res.top1, q[sub], fps, struct)
            rows_an.append({"method": res.name, "mean_top1_tanimoto": None, "subsample_top1_tanimoto": float(t.mean()),
                            "queries_per_s": None})
            print(rows_an[-1])
        timing = peers.matchms_open_timing(table, sets.train_rows, q[sub[:args.matchms_timing_queries]])
        for name, res in timing.items():
            for row in rows_an:
                if row["method"].startswith(name) and row["queries_per_s"] is None:
                    row["queries_per_s"] = res.queries_per_second
                    row["method"] += f" [q/s: matchms itself on {res.n_queries} queries]"
        data["analogue"] = {"queries": len(q), "subsample": len(sub), "library": len(sets.train_rows),
                            "rows": rows_an}

    write_report(data, rows_id, rows_an)


def write_report(data: dict[str, Any], rows_id: list[dict[str, Any]], rows_an: list[dict[str, Any]]) -> None:
    best_id = max(r["top1_accuracy"] for r in rows_id[1:])
    best_an = max(r["subsample_top1_tanimoto"] for r in rows_an[1:])
    best_an_full = max((r["mean_top1_tanimoto"] for r in rows_an[1:] if r["mean_top1_tanimoto"] is not None),
                       default=float("nan"))
    flash_id = next(r["queries_per_s"] for r in rows_id if r["method"] == "Flash entropy identity")
    ours_id, ours_an = rows_id[0], rows_an[0]
    targets = [
        {"target": "identity top-1 >= best peer", "ours": ours_id["top1_accuracy"], "needed": best_id,
         "met": ours_id["top1_accuracy"] >= best_id},
        {"target": "analogue mean top-1 Tanimoto >= best peer + 0.05 (subsample, all peers)",
         "ours": ours_an["subsample_top1_tanimoto"], "needed": best_an + 0.05,
         "met": ours_an["subsample_top1_tanimoto"] >= best_an + 0.05},
        {"target": "analogue mean top-1 Tanimoto >= best peer + 0.05 (all val, Flash peers)",
         "ours": ours_an["mean_top1_tanimoto"], "needed": best_an_full + 0.05,
         "met": ours_an["mean_top1_tanimoto"] >= best_an_full + 0.05},
        {"target": "identity queries/s >= Flash entropy identity", "ours": ours_id["queries_per_s"],
         "needed": flash_id, "met": ours_id["queries_per_s"] >= flash_id},
    ]
    data["targets"] = targets
    ident, ana = data["identity"], data["analogue"]
    body = f"""
Model `{data['model']}` (encoder {data['encoder_hash']}); embedding {data['embedding_spectra_per_s']:,.0f}
spectra/s. Ion mode always matched; precursor window 10 ppm for identity; fragment tolerance: ours
0.02 Da (entropy) / 0.1 Da (cosines), Flash 0.02 Da, matchms 0.1 Da (its default).

**Identity** ({ident['queries']} val queries, one per structure and ion mode with >= 2 spectra;
library {ident['library']:,} = train + the other val spectra):

{markdown_table(ident['rows'], ['method', 'top1_accuracy', 'queries_per_s'])}

Reliability of our identity score at rank 1 (score bin, hits, mean score, observed share correct):

{markdown_table(data['identity_reliability'])}

**Analogue** ({ana['queries']:,} val queries against the {ana['library']:,} train spectra, which never hold
their structure; matchms all-precursor scores on a seeded subsample of {ana['subsample']} queries,
computed with our vectorised re-implementation that reproduces matchms exactly, its speed measured
with matchms itself):

{markdown_table(ana['rows'], ['method', 'mean_top1_tanimoto', 'subsample_top1_tanimoto', 'queries_per_s'])}

Reliability against query embedding quality (quartiles of the query's quality):

{markdown_table(data['analogue_by_quality'])}

Reliability (predicted Tanimoto of the top hit, binned) vs the observed mean Tanimoto:

{markdown_table(data['analogue_reliability'])}

**Targets**

{markdown_table(targets)}
"""
    write_results("search", "Search: identity and analogue vs Flash entropy and matchms (val)", body, data,
                  HERE / "results.json")
    print(body)


if __name__ == "__main__":
    main()
