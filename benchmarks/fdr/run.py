"""FDR benchmark on val: target-decoy q-values against the truth, peers at equal true FDR, cross-mode analogues.

* **Identity FDR.** Queries: one val spectrum per (structure, ion mode) with >= 2 spectra (seeded). Half
  of the query structures (InChIKey first block, seeded) are *absent*: all their spectra are removed from
  the library; the library is the remaining val spectra plus one decoy per spectrum
  (:mod:`engine.core.decoys`, the shipped pool, built from train), embedded with the same model. A
  rank-1 match is false when its InChIKey first block differs from the query's. Estimated FDR = the
  engine's q-value; true FDR of the matches accepted at q <= t. Target: at t = 1, 5, 10 %, true FDR
  <= 1.5 t + 1 point.
* **Correct matches at 1 % true FDR**, same queries and library (targets only for the peers): the engine
  (rank-1 score), Flash entropy identity search (ms_entropy) and matchms CosineGreedy, each at the score
  threshold that accepts the most matches with true FDR <= 1 %.
* **Cross-mode analogues**: val queries (seeded subsample per ion mode) against the train library of the
  other ion mode only (the engine searching across modes) beside the same-mode library; mean Tanimoto
  (RDKit fingerprint, 2048 bits) of the top hit's structure to the query's, a query without a hit
  counting 0.
* **Analogue trust**: share of top analogue hits below Tanimoto 0.4 among those with reliability >= r,
  estimated on the calibration fold of train (fold queries against the rest of train; what
  ``engine/data/calibration/analogue_trust.json`` ships with ``--write-trust``) and observed on val.

Usage: ``nice -n 10 python benchmarks/fdr/run.py [--model CKPT] [--analogue-queries 600]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also runnable as a script

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks._results import commit, markdown_table, write_results
from benchmarks.search import peers
from benchmarks.search.common import build_library, calibration_fold, embed
from benchmarks.search.data import SPECTRA, fingerprints, tanimoto
from engine.core.decoys import FragmentPool
from engine.core.schema import batch_to_spectra, spectra_to_batch
from engine.jobs.library import DECOY_POOL
from engine.jobs.settings import AnnotateSettings
from engine.queries.analogue import AnalogueSettings, analogue_search
from engine.queries.fdr import q_values
from engine.queries.identity import IdentitySettings, identity_search_tdc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRUST_JSON = ROOT / "engine" / "data" / "calibration" / "analogue_trust.json"
COLUMNS = ["spectrum_id", "mz", "intensity", "precursor_mz", "charge", "ion_mode", "adduct", "smiles", "inchikey",
           "inchikey14", "split", "license", "murcko_scaffold"]
NOMINAL = (0.01, 0.05, 0.10)
RELIABILITY_LEVELS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
LOW_TANIMOTO = 0.4


def load() -> pa.Table:
    table = pq.read_table(SPECTRA, columns=COLUMNS)
    keep = pc.and_(pc.is_valid(table.column("precursor_mz")), pc.greater(pc.list_value_length(table.column("mz")), 0))
    return table.filter(keep)


def identity_sets(table: pa.Table, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                       npt.NDArray[np.bool_]]:
    """(queries, library rows, query structure present in the library) over the val rows."""
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    keys = np.asarray(table.column("inchikey14").to_pylist(), dtype=object)
    modes = np.asarray(table.column("ion_mode").to_pylist(), dtype=object)
    val = np.flatnonzero(split == "val")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in val:
        groups.setdefault((keys[i], modes[i]), []).append(int(i))
    queries = np.asarray(sorted(int(rng.choice(m)) for k, m in sorted(groups.items()) if len(m) >= 2), np.int64)
    structures = np.asarray(sorted({keys[q] for q in queries}), dtype=object)
    absent = set(rng.choice(structures, size=len(structures) // 2, replace=False).tolist())
    library = np.asarray([i for i in np.setdiff1d(val, queries) if keys[i] not in absent], dtype=np.int64)
    present = np.asarray([keys[q] not in absent for q in queries], dtype=bool)
    return queries, library, present


def with_decoy_rows(table: pa.Table, library: npt.NDArray[np.int64]) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """``table`` with an ``is_decoy`` column and one decoy row per library row appended; the decoy rows."""
    pool = FragmentPool.load(DECOY_POOL)
    cols = ["spectrum_id", "mz", "intensity", "precursor_mz", "charge", "ion_mode", "adduct"]
    targets = list(batch_to_spectra(table.take(pa.array(library)).select(cols)))
    decoys = spectra_to_batch(pool.decoys(targets))
    extra = pa.Table.from_batches([decoys]).select(cols)
    n = extra.num_rows
    fill = {f.name: pa.nulls(n, f.type) for f in table.schema if f.name not in cols}
    extra = pa.table({f.name: (extra.column(f.name).cast(f.type) if f.name in cols else fill[f.name])
                      for f in table.schema})
    out = pa.concat_tables([table, extra])
    flags = np.r_[np.zeros(table.num_rows, bool), np.ones(n, bool)]
    return out.append_column("is_decoy", pa.array(flags)), np.arange(table.num_rows, table.num_rows + n)


def true_fdr_curve(accept_order: npt.NDArray[np.int64], false: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """True FDR after accepting the first k of ``accept_order``, for every k."""
    f = np.cumsum(false[accept_order])
    return f / np.arange(1, accept_order.shape[0] + 1)


def correct_at_fdr(score: npt.NDArray[np.float64], has_hit: npt.NDArray[np.bool_], correct: npt.NDArray[np.bool_],
                   level: float) -> tuple[int, float | None]:
    """Most correct matches accepted by a score threshold with true FDR <= ``level``, and that threshold."""
    idx = np.flatnonzero(has_hit)
    order = idx[np.argsort(-score[idx], kind="stable")]
    s = score[order]
    fdr = true_fdr_curve(order, ~correct)
    # a threshold accepts whole tie groups: evaluate at the end of each group
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.shape[0] - 1] if s.shape[0] else np.zeros(0, np.int64)
    ok = ends[fdr[ends] <= level]
    if ok.size == 0:
        return 0, None
    k = int(ok.max())
    return int(correct[order[:k + 1]].sum()), float(s[k])


def curve_note(curve: dict[str, list[float]]) -> str:
    """Where along the curve the true FDR exceeds the target line (1.5 x estimated + 1 point), if anywhere."""
    q, true = np.asarray(curve["q"]), np.asarray(curve["true_fdr"])
    over = true > 1.5 * q + 0.01
    if not over.any():
        return "Along the whole curve the true FDR stays within 1.5 x the q-value + 1 point."
    worst = int(np.argmax(true - (1.5 * q + 0.01)))
    return (f"Between the nominal levels the true FDR exceeds 1.5 x the q-value + 1 point for q in "
            f"{q[over].min():.3f}..{q[over].max():.3f} (worst: true {true[worst]:.3f} at q {q[worst]:.3f}); "
            f"the estimate runs low there.")


def identity_markdown(data: dict[str, Any]) -> str:
    return (f"**Identity FDR** ({data['queries']} val queries, one per structure and ion mode with >= 2 spectra; "
            f"{data['queries_structure_present']} have their structure in the library, the other half's structures "
            f"were removed from it; library {data['library_spectra']:,} val spectra + {data['decoys']:,} decoys, "
            f"conditional peak sampling from the shipped train pool; {data['queries_won_by_decoy']} queries' best "
            f"candidate was a decoy). A match is false when its InChIKey first block differs. Target: true FDR "
            f"<= 1.5 x nominal + 1 point.\n\n"
            + markdown_table(data["levels"]) + "\n\n" + curve_note(data["curve"])
            + "\n\n![estimated vs true FDR](fdr/fdr_estimated_vs_true.png)\n\n"
            "**Correct matches at 1 % true FDR** (same queries; peers search the target spectra only; each "
            "at the score threshold accepting the most matches with true FDR <= 1 %; the engine's q-value "
            "row accepts by estimated FDR instead):\n\n" + markdown_table(data["at_1pct_true_fdr"]))


def analogue_markdown(data: dict[str, Any]) -> str:
    search_pool, trust_pool = data.get("search_pool", "?"), data.get("trust_pool", "?")
    return (f"**Cross-mode analogue search** (seeded val subsample per ion mode against train, {search_pool} "
            "embedding neighbours re-scored per query as `engine search` does; the hit's "
            "structure vs the query's, RDKit fingerprint Tanimoto, no hit = 0):\n\n"
            + markdown_table(data["cross_mode"])
            + "\n\n**Analogue trust**: share of top analogue hits below Tanimoto 0.4 among hits with "
              f"reliability >= r, {trust_pool} embedding neighbours re-scored per query as `engine annotate` "
              "does (a table holds for one pool; the job reports no estimate for another); estimated on the "
              "calibration fold of train (fold queries vs the rest of train; shipped as "
              "`engine/data/calibration/analogue_trust.json`, what `engine annotate` reports), observed on val "
              "(the same-mode queries above, searched again at that pool):\n\n"
            + markdown_table(data["analogue_trust"]))


def write_markdown(data: dict[str, Any]) -> None:
    data["run_commit"] = data.get("run_commit") or data.get("commit") or commit()
    intro = (f"Run at commit {data['run_commit']}. Model `{data['model']}` (encoder {data['encoder_hash']}). "
             f"Decoys: conditional peak sampling "
             f"(Passatutto's spectrum-based method) from the shipped fragment pool; q-values from target-decoy "
             f"competition of each query's best target and best decoy, (decoys + 1) / targets.")
    bodies = [identity_markdown(data["identity"])]
    if "analogue" in data:
        bodies.append(analogue_markdown(data["analogue"]))
    keep = {k: v for k, v in data.items() if k not in ("benchmark", "date", "commit", "machine")}
    write_results("fdr", "FDR: target-decoy q-values, peers at equal true FDR, cross-mode analogues (val)",
                  intro + "\n\n" + "\n\n".join(bodies), keep, HERE / "results.json")


def run_identity(table: pa.Table, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32], model: Any,
                 tmp: Path, seed: int, skip_peers: bool) -> tuple[dict[str, Any], str]:
    queries, library, present = identity_sets(table, seed)
    full, decoy_rows = with_decoy_rows(table, library)
    t0 = time.perf_counter()
    d_emb, d_qual = model.embed_spectra(full.take(pa.array(decoy_rows)))
    emb_all, qual_all = np.concatenate([emb, d_emb]), np.concatenate([quality, d_qual])
    print(f"identity: {len(queries)} queries ({int(present.sum())} with their structure in the library), "
          f"library {len(library)} + {len(decoy_rows)} decoys (embedded in {time.perf_counter() - t0:.1f} s)")
    index, refs, _ = build_library(tmp / "identity", full, np.r_[library, decoy_rows], emb_all, qual_all,
                                   encoder_hash=model.encoder_hash)
    assert refs.has_decoys
    keys = np.asarray(full.column("inchikey14").to_pylist(), dtype=object)
    pos = {sid: i for i, sid in enumerate(full.column("spectrum_id").to_pylist())}
    hits, contests = [], []
    t0 = time.perf_counter()
    for s in range(0, len(queries), 512):
        q = queries[s:s + 512]
        h, c = identity_search_tdc(full.take(pa.array(q)), index, refs, model, settings=IdentitySettings(top_k=1),
                                   embeddings=(emb[q], quality[q]))
        hits.append(h)
        contests.append(c)
    seconds = time.perf_counter() - t0
    res = pa.concat_tables(hits)
    contest = pa.concat_tables(contests)
    qpos = {sid: j for j, sid in enumerate(full.column("spectrum_id").take(pa.array(queries)).to_pylist())}
    n = len(queries)
    top1 = np.full(n, -1, np.int64)
    score = np.full(n, np.nan)
    for r in res.to_pylist():
        j = qpos[r["query_id"]]
        top1[j], score[j] = pos[r["library_id"]], r["score"]
    order = [qpos[i] for i in contest.column("query_id").to_pylist()]
    t_s, d_s = np.full(n, np.nan), np.full(n, np.nan)
    t_s[order] = contest.column("target_score").to_numpy(zero_copy_only=False)
    d_s[order] = contest.column("decoy_score").to_numpy(zero_copy_only=False)
    q = q_values(t_s, d_s)
    has_hit = top1 >= 0
    correct = has_hit & (keys[np.maximum(top1, 0)] == keys[queries])
    assert not np.isin(top1[has_hit], decoy_rows).any(), "a decoy was returned"
    # estimated vs true FDR
    acc = np.flatnonzero(np.isfinite(q))
    acc = acc[np.argsort(q[acc], kind="stable")]
    curve_true = true_fdr_curve(acc, ~correct)
    levels = []
    for t in NOMINAL:
        mask = np.isfinite(q) & (q <= t)
        k = int(mask.sum())
        true = float((~correct[mask]).mean()) if k else 0.0
        levels.append({"nominal_fdr": t, "accepted": k, "correct": int(correct[mask].sum()),
                       "true_fdr": round(true, 4), "target_max": round(1.5 * t + 0.01, 4),
                       "meets_target": bool(true <= 1.5 * t + 0.01)})
    plot_curve(q[acc], curve_true, HERE / "fdr_estimated_vs_true.png")
    # correct matches at 1 % true FDR
    peers_rows = [{"method": "engine identity (rank-1 score)",
                   **dict(zip(("correct_at_1pct_true_fdr", "threshold"),
                              correct_at_fdr(np.nan_to_num(score, nan=-1), has_hit, correct, 0.01), strict=True)),
                   "queries_with_hit": int(has_hit.sum())}]
    m1 = np.isfinite(q) & (q <= 0.01)
    peers_rows.append({"method": f"engine identity, accepted at q <= 1 % (true FDR {(~correct[m1]).mean():.2%})",
                       "correct_at_1pct_true_fdr": int(correct[m1].sum()), "threshold": None,
                       "queries_with_hit": int(m1.sum())})
    if not skip_peers:
        flash = peers.flash_search(full, library, queries, methods=("identity",))
        found = {"Flash entropy identity": flash["identity"]}
        found.update({k: v for k, v in peers.matchms_identity(full, library, queries).items() if "Modified" not in k})
        for name, r in found.items():
            hit = r.top1 >= 0
            ok = hit & (keys[np.maximum(r.top1, 0)] == keys[queries])
            c, thr = correct_at_fdr(r.top1_score, hit, ok, 0.01)
            peers_rows.append({"method": name, "correct_at_1pct_true_fdr": c, "threshold": thr,
                               "queries_with_hit": int(hit.sum())})
    data = {"queries": n, "queries_structure_present": int(present.sum()), "library_spectra": len(library),
            "decoys": len(decoy_rows), "search_seconds": seconds,
            "queries_won_by_decoy": int((np.isfinite(d_s) & ~(np.nan_to_num(t_s, nan=-1) > d_s)).sum()),
            "levels": levels, "at_1pct_true_fdr": peers_rows,
            "curve": {"q": q[acc][::max(1, len(acc) // 200)].round(4).tolist(),
                      "true_fdr": curve_true[::max(1, len(acc) // 200)].round(4).tolist()}}
    return data, identity_markdown(data)


def plot_curve(q: npt.NDArray[np.float64], true: npt.NDArray[np.float64], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = float(max(0.1, 1.2 * max(np.max(q, initial=0), np.max(true, initial=0))))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.plot(q, true, lw=1.5, label="engine (target-decoy q-value)")
    x = np.linspace(0, top, 50)
    ax.plot(x, x, "k--", lw=0.8, label="estimated = true")
    ax.plot(x, 1.5 * x + 0.01, ":", color="grey", lw=0.8, label="target: 1.5 x + 1 pt")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("estimated FDR (q-value threshold)")
    ax.set_ylabel("true FDR of accepted matches")
    ax.set_title("Identity matches on val")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def analogue_top1(table: pa.Table, queries: npt.NDArray[np.int64], emb: npt.NDArray[np.float32],
                  quality: npt.NDArray[np.float32], index: Any, refs: Any, model: Any, *, cross: bool,
                  pool: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.object_]]:
    """(top-1 row or -1, reliability, hit ion mode) per query, ``pool`` embedding neighbours re-scored."""
    pos = {sid: i for i, sid in enumerate(table.column("spectrum_id").to_pylist())}
    qpos = {int(q): j for j, q in enumerate(queries)}
    top1 = np.full(len(queries), -1, np.int64)
    rel = np.full(len(queries), np.nan)
    mode = np.full(len(queries), None, dtype=object)
    settings = AnalogueSettings(top_k=1, same_ion_mode=not cross, n_candidates=pool)
    for s in range(0, len(queries), 256):
        q = queries[s:s + 256]
        res = analogue_search(table.take(pa.array(q)), index, refs, model, settings=settings,
                              embeddings=(emb[q], quality[q]))
        for r in res.to_pylist():
            j = qpos[pos[r["query_id"]]]
            top1[j], rel[j], mode[j] = pos[r["library_id"]], r["score"], r["ion_mode"]
    return top1, rel, mode


def share_below(rel: npt.NDArray[np.float64], tani: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    out = []
    for r in RELIABILITY_LEVELS:
        m = np.isfinite(rel) & (rel >= r)
        out.append({"min_reliability": r, "hits": int(m.sum()),
                    "share_below_0.4": round(float((tani[m] < LOW_TANIMOTO).mean()), 4) if m.any() else None})
    return out


def run_analogue(table: pa.Table, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32], model: Any,
                 tmp: Path, n_queries: int, seed: int, write_trust: bool, trust_pool: int
                 ) -> tuple[dict[str, Any], str]:
    """Cross-mode analogues at ``engine search``'s candidate pool; the trust table at ``trust_pool`` (the
    annotate job's), estimated on the fold and observed on the same val queries."""
    search_pool = AnalogueSettings().n_candidates
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    modes = np.asarray(table.column("ion_mode").to_pylist(), dtype=object)
    smiles = np.asarray(table.column("smiles").to_pylist(), dtype=object).astype(str)
    uniq, struct = np.unique(smiles, return_inverse=True)
    fps = fingerprints(uniq.tolist())
    rng = np.random.default_rng(seed)
    train = np.flatnonzero(split == "train")

    def tani(q: npt.NDArray[np.int64], top1: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        t = tanimoto(fps[struct[q]], fps[struct[np.maximum(top1, 0)]])
        return np.where(top1 >= 0, t, 0.0)

    rows: list[dict[str, Any]] = []
    val_rel: list[npt.NDArray[np.float64]] = []
    val_tani: list[npt.NDArray[np.float64]] = []
    libs = {m: build_library(tmp / f"train-{m}", table, train[modes[train] == m], emb, quality,
                             encoder_hash=model.encoder_hash)[:2] for m in ("positive", "negative")}
    for qmode, other in (("negative", "positive"), ("positive", "negative")):
        pool = np.flatnonzero((split == "val") & (modes == qmode))
        q = np.sort(rng.choice(pool, size=min(n_queries, len(pool)), replace=False))
        same_top, _, _ = analogue_top1(table, q, emb, quality, *libs[qmode], model, cross=False, pool=search_pool)
        cross_top, _, hit_mode = analogue_top1(table, q, emb, quality, *libs[other], model, cross=True,
                                               pool=search_pool)
        assert all(m in (other, None) for m in hit_mode)
        t_same, t_cross = tani(q, same_top), tani(q, cross_top)
        trust_top, trust_rel, _ = analogue_top1(table, q, emb, quality, *libs[qmode], model, cross=False,
                                                pool=trust_pool)
        val_rel.append(trust_rel)
        val_tani.append(tani(q, trust_top))
        rows.append({"queries": f"{qmode} ({len(q)})", "library": f"train {qmode} (same mode)",
                     "mean_top1_tanimoto": round(float(t_same.mean()), 4)})
        rows.append({"queries": f"{qmode} ({len(q)})", "library": f"train {other} only (--cross-mode)",
                     "mean_top1_tanimoto": round(float(t_cross.mean()), 4)})
    # analogue trust: estimated on the calibration fold of train, observed on val
    fold = calibration_fold(table)
    rest = train[~fold[train]]
    fold_rows = np.flatnonzero(fold)
    fq = np.sort(rng.choice(fold_rows, size=min(2 * n_queries, len(fold_rows)), replace=False))
    index, refs, _ = build_library(tmp / "train-rest", table, rest, emb, quality, encoder_hash=model.encoder_hash)
    f_top, f_rel, _ = analogue_top1(table, fq, emb, quality, index, refs, model, cross=False, pool=trust_pool)
    estimated = share_below(f_rel, tani(fq, f_top))
    observed = share_below(np.concatenate(val_rel), np.concatenate(val_tani))
    trust = [{"min_reliability": e["min_reliability"], "estimated_share_below_0.4": e["share_below_0.4"],
              "observed_share_below_0.4_val": o["share_below_0.4"], "val_hits": o["hits"]}
             for e, o in zip(estimated, observed, strict=True)]
    if write_trust:
        TRUST_JSON.write_text(json.dumps({
            "what": "share of top analogue hits whose structure has Tanimoto < 0.4 to the query's, among hits "
                    "with reliability >= min_reliability; calibration fold of train (benchmarks/fdr/run.py)",
            "encoder_hash": model.encoder_hash, "n_candidates": trust_pool, "tanimoto": LOW_TANIMOTO,
            "queries": len(fq),
            "levels": [{"min_reliability": e["min_reliability"], "share_below": e["share_below_0.4"],
                        "hits": e["hits"]} for e in estimated]}, indent=1) + "\n")
    out = {"cross_mode": rows, "analogue_trust": trust, "search_pool": search_pool, "trust_pool": trust_pool}
    return out, analogue_markdown(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--analogue-queries", type=int, default=600, help="val queries per ion mode (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-analogue", action="store_true")
    parser.add_argument("--write-trust", action="store_true", help=f"write {TRUST_JSON.relative_to(ROOT)}")
    parser.add_argument("--trust-pool", type=int, default=AnnotateSettings().analogue_candidates,
                        help="analogue candidates per query of the trust table (default: engine annotate's)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite the RESULTS.md section from results.json without running")
    args = parser.parse_args()
    if args.markdown_only:
        data = json.loads((HERE / "results.json").read_text())
        curve = data["identity"]["curve"]
        plot_curve(np.asarray(curve["q"]), np.asarray(curve["true_fdr"]), HERE / "fdr_estimated_vs_true.png")
        write_markdown(data)
        return
    from engine.models.model import DEFAULT_MODEL, load_model

    model = load_model(args.model or DEFAULT_MODEL)
    table = load()
    emb, quality, seconds = embed(model, table)
    print(f"embedded {table.num_rows} spectra in {seconds:.1f} s")
    data: dict[str, Any] = {"model": str(args.model or "bundled default"), "encoder_hash": model.encoder_hash}
    with tempfile.TemporaryDirectory() as tmp:
        ident, _ = run_identity(table, emb, quality, model, Path(tmp), args.seed, args.skip_peers)
        data["identity"] = ident
        print(json.dumps(ident["levels"], indent=1), json.dumps(ident["at_1pct_true_fdr"], indent=1))
        if not args.skip_analogue:
            an, _ = run_analogue(table, emb, quality, model, Path(tmp), args.analogue_queries, args.seed,
                                 args.write_trust, args.trust_pool)
            data["analogue"] = an
            print(json.dumps(an, indent=1))
    write_markdown(data)


if __name__ == "__main__":
    main()
