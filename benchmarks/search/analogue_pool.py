"""Analogue quality and speed against the candidate pool size (``AnalogueSettings.n_candidates``).

``engine search --mode analogue`` retrieves ``AnalogueSettings().n_candidates`` per query (2000; its
``--analogue-candidates``); ``engine annotate`` retrieves its ``--analogue-candidates`` (10 by default, for
throughput). The tree re-ranker applies from pools as large as its ``top``.
A seeded sample of val queries against the train library (as the ``search`` section), mean top-1
Tanimoto (RDKit fingerprint, 2048 bits; a query without a hit counts 0) on all of them and on the
high-resolution clean ones, and analogue queries/s (embeddings given, so search and re-scoring only).

Usage: ``python benchmarks/search/analogue_pool.py [--queries 2000] [--pools 10,60,200,1000,2000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also runnable as a script

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from benchmarks._results import markdown_table, write_results
from benchmarks.search.common import build_library, embed
from benchmarks.search.data import fingerprints, load_sets, tanimoto
from engine.queries.analogue import AnalogueSettings, analogue_search

HERE = Path(__file__).resolve().parent


def calibration(reliability: npt.NDArray[np.float64], tani: npt.NDArray[np.float64]) -> dict[str, float]:
    """How well the top hit's reliability (its predicted Tanimoto) matches the truth: mean reliability against
    mean Tanimoto, their mean absolute gap over 0.1-wide reliability bins (weighted by hits), and the mean
    Tanimoto of the hits at reliability >= 0.5 (the annotate job's default threshold)."""
    ok = np.isfinite(reliability)
    rel, true = reliability[ok], tani[ok]
    bins = np.minimum((np.clip(rel, 0, 1) * 10).astype(np.int64), 9)
    gap = sum(abs(rel[bins == b].mean() - true[bins == b].mean()) * (bins == b).sum() for b in range(10)
              if (bins == b).any()) / max(int(ok.sum()), 1)
    high = rel >= 0.5
    return {"mean_reliability": float(rel.mean()), "mean_tanimoto_of_hits": float(true.mean()),
            "calibration_gap": float(gap),
            "tanimoto_at_reliability_0.5+": float(true[high].mean()) if high.any() else float("nan"),
            "hits_at_reliability_0.5+": int(high.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--pools", default="10,60,200,1000,2000")
    args = parser.parse_args()
    from engine.jobs.artifacts import open_model
    from engine.queries.rerank import load_tree_reranker

    model = open_model()
    trees = load_tree_reranker(model.encoder_hash)
    tree_top = int(trees.info["top"]) if trees is not None else None
    sets = load_sets()
    table = sets.spectra
    emb, quality, _ = embed(model, table)
    smiles = np.asarray(table.column("smiles").to_pylist(), dtype=object).astype(str)
    uniq, struct = np.unique(smiles, return_inverse=True)
    fps = fingerprints(uniq.tolist())
    position = {s: i for i, s in enumerate(table.column("spectrum_id").to_pylist())}
    queries = np.sort(np.random.default_rng(0).choice(sets.analogue_queries, args.queries, replace=False))
    clean = sets.hires_clean[queries]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        index, refs, _ = build_library(Path(tmp), table, sets.train_rows, emb, quality,
                                       encoder_hash=model.encoder_hash)
        refs.prepare()
        for pool in (int(p) for p in args.pools.split(",")):
            settings = AnalogueSettings(top_k=1, n_candidates=pool)
            hit = np.full(len(queries), -1, dtype=np.int64)
            reliability = np.full(len(queries), np.nan)
            start = time.perf_counter()
            for s in range(0, len(queries), 500):
                part = queries[s:s + 500]
                result = analogue_search(table.take(pa.array(part)), index, refs, model, settings=settings,
                                         embeddings=(emb[part], quality[part]))
                for query_id, library_id, score in zip(result.column("query_id").to_pylist(),
                                                       result.column("library_id").to_pylist(),
                                                       result.column("score").to_pylist(), strict=True):
                    j = np.searchsorted(queries, position[query_id])
                    hit[j], reliability[j] = position[library_id], score
            seconds = time.perf_counter() - start
            tani = np.where(hit >= 0, tanimoto(fps[struct[queries]], fps[struct[np.maximum(hit, 0)]]), 0.0)
            rows.append({"candidates per query": pool,
                         "re-ranker": "trees" if tree_top is not None and pool >= tree_top else "linear",
                         "mean_top1_tanimoto": float(tani.mean()), "mean_hires_clean": float(tani[clean].mean()),
                         "queries_per_s": len(queries) / seconds, **calibration(reliability, tani)})
            print(rows[-1], flush=True)
    body = f"""
Analogue search by candidate pool size: {len(queries):,} seeded val queries ({int(clean.sum()):,} high-resolution
clean) against the {len(sets.train_rows):,} train spectra; `engine search` uses {AnalogueSettings().n_candidates}
candidates, `engine annotate` `--analogue-candidates` (default 10); the tree re-ranker applies from {tree_top}.
Queries/s: search and re-scoring with the embeddings given. Calibration of the top hit's reliability (its
predicted Tanimoto): mean reliability against the hits' mean Tanimoto, the mean absolute gap between them over
0.1-wide reliability bins, and the mean Tanimoto of the hits the annotate job counts (reliability >= 0.5).

{markdown_table(rows)}
"""
    write_results("search-analogue-pool", "Analogue search: candidate pool size (val)", body, {"rows": rows},
                  HERE / "analogue_pool.json")
    print(body)


if __name__ == "__main__":
    main()
