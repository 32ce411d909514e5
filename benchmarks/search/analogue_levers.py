"""Analogue-search levers, fitted on the calibration fold of train and measured on val (all and hires clean).

Candidates as :func:`engine.queries.analogue.analogue_candidates` gives them (the ``--pool`` nearest
library spectra by embedding cosine; by default as many as ``engine search`` retrieves; another pool
writes its own section, ``search-analogue-levers-pool<N>``). Fold: calibration-fold queries
(redistributable records, seeded sample) against train outside the fold; val: every val spectrum
against train (as the search benchmark). Each
lever is an ordering of a query's candidates; the metric is the mean Tanimoto (RDKit fingerprint, 2048
bits) of the top-ranked candidate's structure to the query's. Levers are chosen on the fold (5-fold
cross-validation over its queries where a lever is fitted); val is only reported.

With ``--members CKPT,...`` (the ensemble members of candidate ranking, ``engine/data/model/members``) every
(query, candidate) pair also gets ``member_cosine``, the mean of the members' spectrum-spectrum cosines, and
``ensemble_cosine``, the mean with the model's own: levers with them are measured beside the rest.

Usage: ``python benchmarks/search/analogue_levers.py [--cache DIR] [--fold-queries 5000] [--pool N]
[--members CKPT,...] [--save]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also runnable as a script

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks._results import markdown_table, write_results
from benchmarks.search.calibrate import batched_candidates
from benchmarks.search.common import build_library, calibration_fold, embed, molecule_embeddings
from benchmarks.search.data import SPECTRA, fingerprints, load_sets, tanimoto
from engine.jobs.settings import AnnotateSettings
from engine.models.calibration import fit_listwise, load_calibration
from engine.queries.analogue import (
    ANALOGUE_RANKER,
    AnalogueSettings,
    Consensus,
    analogue_candidates,
    consensus_scores,
)
from engine.queries.hits import top_per_query
from engine.queries.rerank import (
    ANALOGUE_RERANK_TREES,
    ANALOGUE_RERANKER,
    TREE_MIN_POOL,
    consensus_name,
    first_stage_info,
    tree_consensus_pairs,
    tree_features,
)

HERE = Path(__file__).resolve().parent
Feats = dict[str, Any]


def candidates(table: pa.Table, queries: npt.NDArray[np.int64], library: npt.NDArray[np.int64],
               emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32], encoder_hash: str,
               work: Path, fps: npt.NDArray[np.uint8], struct: npt.NDArray[np.int64], pool: int) -> Feats:
    index, refs, _ = build_library(work, table, library, emb, quality, encoder_hash=encoder_hash)
    refs.prepare()
    qi, rows, feats = batched_candidates(analogue_candidates, table, queries, emb, quality, index, refs,
                                         AnalogueSettings(n_candidates=pool))
    a, b = struct[queries[qi]], struct[rows]
    feats["tanimoto"] = np.concatenate([tanimoto(fps[a[s:s + CHUNK]], fps[b[s:s + CHUNK]])
                                        for s in range(0, len(a), CHUNK)])
    return {"qi": qi, "rows": rows, "n": len(queries), **feats}


CHUNK = 1 << 19  # pairs at a time where a pair expands to vectors (millions of pairs at large pools)


def rowwise_dot(a: npt.NDArray[np.float32], ia: npt.NDArray[np.int64], b: npt.NDArray[np.float32],
                ib: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``a[ia] . b[ib]`` row by row, in chunks."""
    return np.concatenate([np.einsum("ij,ij->i", a[ia[s:s + CHUNK]], b[ib[s:s + CHUNK]])
                           for s in range(0, len(ia), CHUNK)] or [np.zeros(0)]).astype(np.float64)


def top1_mean(qi: npt.NDArray[np.int64], order: npt.NDArray[np.float64], tani: npt.NDArray[np.float64],
              queries: npt.NDArray[np.int64], n: int) -> float:
    """Mean top-1 Tanimoto over ``queries`` (positions; a query without candidates counts 0)."""
    keep, _ = top_per_query(qi, order, 1)
    best = np.zeros(n)
    best[qi[keep]] = tani[keep]
    return float(best[queries].mean()) if queries.size else float("nan")


def with_consensus(c: Feats, logit: npt.NDArray[np.float64], fps: npt.NDArray[np.uint8], top: int,
                   factors: tuple[float, ...], spread: float) -> dict[str, npt.NDArray[np.float64]]:
    """Consensus features of each query's ``top`` candidates by ``logit`` (NaN outside)."""
    out = {}
    for f in factors:
        out[f"consensus_{f}"] = consensus_scores(c["qi"], logit, fps, top=top, temperature=f * spread)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--fold-queries", type=int, default=5000,
                        help="calibration-fold queries (seeded sample; the fold holds 4,951 redistributable spectra)")
    parser.add_argument("--out", type=Path, default=HERE / "analogue_levers.json")
    parser.add_argument("--members", default="", help="comma-separated ensemble members (checkpoints)")
    parser.add_argument("--pool", type=int, default=AnalogueSettings().n_candidates,
                        help="candidates per query (the nearest library spectra by embedding cosine; default: "
                             "engine search's)")
    parser.add_argument("--save", action="store_true",
                        help="store the re-rankers: the trees (best on the fold) and their scale when --pool is "
                             f"engine search's, the linear one ({SHIPPED}, {ANALOGUE_RERANKER}.json) when it is "
                             f"{LINEAR_POOL}")
    args = parser.parse_args()
    from engine.jobs.artifacts import open_model
    from engine.models.training.config import REDISTRIBUTABLE_LICENSES

    model = open_model()
    sets = load_sets()
    table = sets.spectra
    extra = pq.read_table(SPECTRA, columns=["precursor_mz", "mz", "license", "murcko_scaffold"])
    extra = extra.filter(pc.and_(pc.is_valid(extra.column("precursor_mz")),
                                 pc.greater(pc.list_value_length(extra.column("mz")), 0)))
    table = table.append_column("license", extra.column("license"))
    table = table.append_column("murcko_scaffold", extra.column("murcko_scaffold"))
    cache = args.cache
    if cache is not None and (cache / "emb.npz").is_file():
        z = np.load(cache / "emb.npz")
        emb, quality = z["emb"], z["quality"]
    else:
        emb, quality, _ = embed(model, table)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache / "emb.npz", emb=emb, quality=quality)
    mol, struct = molecule_embeddings(model, table, cache)
    smiles = np.asarray(table.column("smiles").to_pylist(), dtype=object).astype(str)
    uniq = np.unique(smiles)
    fps_path = cache / "fps.npy" if cache is not None else None
    if fps_path is not None and fps_path.is_file():
        fps = np.load(fps_path)
    else:
        fps = fingerprints(uniq.tolist())
        if fps_path is not None:
            np.save(fps_path, fps)
    member_embs = [embed(open_model(m), table)[0] for m in args.members.split(",") if m]
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    licensed = np.asarray(pc.is_in(table.column("license"), pa.array(list(REDISTRIBUTABLE_LICENSES)))
                          .to_numpy(zero_copy_only=False), dtype=bool)
    fold = calibration_fold(table) & licensed
    fold_q = np.flatnonzero(fold)
    if len(fold_q) > args.fold_queries:
        fold_q = np.sort(np.random.default_rng(2).choice(fold_q, args.fold_queries, replace=False))
    fold_lib = np.flatnonzero((split == "train") & ~calibration_fold(table) & licensed)
    sets_c: dict[str, Feats] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, q, lib in (("fold", fold_q, fold_lib), ("val", sets.analogue_queries, sets.train_rows)):
            path = cache / f"an_{name}_{args.pool}.npz" if cache is not None else None
            if path is not None and path.is_file():
                sets_c[name] = dict(np.load(path))
                sets_c[name]["n"] = int(sets_c[name]["n"])
            else:
                sets_c[name] = candidates(table, q, lib, emb, quality, model.encoder_hash, Path(tmp) / name, fps,
                                          struct, args.pool)
                if path is not None:
                    np.savez(path, **sets_c[name])
            c = sets_c[name]
            c["clean"] = sets.hires_clean[q]
            c["pool"] = args.pool
            c["query_structure"] = struct[q]
            c["fps"] = fps[struct[c["rows"]]]
            # cross-modal: the query spectrum's embedding against the candidate structure's molecule embedding
            c["molecule_cosine"] = rowwise_dot(emb, q[c["qi"]], mol, struct[c["rows"]])
            if member_embs:
                c["member_cosine"] = np.mean([rowwise_dot(m, q[c["qi"]], m, c["rows"]) for m in member_embs], axis=0)
                n_m = len(member_embs)
                c["ensemble_cosine"] = (c["embedding_cosine"] + n_m * c["member_cosine"]) / (n_m + 1)
            print(name, len(q), "queries,", int(c["clean"].sum()), "hires clean,", len(c["qi"]), "pairs", flush=True)
    rows = evaluate(sets_c["fold"], sets_c["val"], load_calibration(ANALOGUE_RANKER, model.encoder_hash),
                    model.encoder_hash if args.save else None)
    fold_c, val_c = sets_c["fold"], sets_c["val"]
    data = {"fold_queries": fold_c["n"], "fold_hires_clean": int(fold_c["clean"].sum()), "val_queries": val_c["n"],
            "val_hires_clean": int(val_c["clean"].sum()), "rows": rows}
    body = f"""
Analogue ordering levers (issue 18), over each query's {args.pool} nearest library spectra by embedding cosine.
Fold: {fold_c['n']:,} calibration-fold queries ({data['fold_hires_clean']:,} high-resolution clean; seeded sample,
redistributable records) against train outside the fold; val: {val_c['n']:,} queries ({data['val_hires_clean']:,}
high-resolution clean) against train. Mean top-1 Tanimoto; fitted levers show cross-validated fold
figures (tree re-rankers: folds grouped by the query's structure); val is reported, never chosen on. The
engine ships the tree re-ranker with the best fold figure (`analogue_rerank_trees.json`, preferred over the
linear `analogue_rerank.json`, which stays as the fallback).

{markdown_table([{k: v for k, v in r.items() if k not in ('coef', 'reliability_val', 'reliability_val_linear')}
                 for r in rows])}
{reliability_text(rows)}{linear_reliability_text(rows)}"""
    if args.pool == AnalogueSettings().n_candidates:
        write_results("search-analogue-levers", "Search levers: analogue ordering (calibration fold -> val)", body,
                      data, args.out)
    else:
        write_results(f"search-analogue-levers-pool{args.pool}", f"Search levers: analogue ordering, {args.pool} "
                      "candidates per query (calibration fold -> val)", body, data,
                      args.out.with_name(f"{args.out.stem}_pool{args.pool}.json"))
    print(body)


def reliability_text(rows: list[dict[str, Any]]) -> str:
    """The val reliability table of the tree re-ranker chosen on the fold (its own scale), if any."""
    chosen = [r for r in rows if "reliability_val" in r]
    if not chosen:
        return ""
    return (f"\nReliability of the chosen trees' top hit on val ({chosen[0]['lever']}; scale "
            "`analogue_rerank_scale.json`, fitted on the fold's cross-validated tree order): predicted Tanimoto "
            "binned vs the observed mean Tanimoto\n\n" + markdown_table(chosen[0]["reliability_val"]) + "\n")


def linear_reliability_text(rows: list[dict[str, Any]]) -> str:
    """The val reliability of the linear re-ranker's top hit with the general and its own scale, if measured."""
    found = [r for r in rows if "reliability_val_linear" in r]
    if not found:
        return ""
    tables = found[0]["reliability_val_linear"]
    return ("\nReliability of the linear re-ranker's top hit on val (the annotate job's path): predicted Tanimoto "
            "binned vs the observed mean Tanimoto, with the general scale (`analogue_scale.json`, fitted in "
            "first-stage order at 200 candidates):\n\n" + markdown_table(tables["general"])
            + "\n\nand with its own scale (`analogue_rerank_linear_scale.json`):\n\n"
            + markdown_table(tables["linear"]) + "\n")


def report(name: str, fold_c: Feats, val_c: Feats, fold_order: npt.NDArray[np.float64],
           val_order: npt.NDArray[np.float64], **extra: Any) -> dict[str, Any]:
    qf, qv = np.arange(fold_c["n"]), np.arange(val_c["n"])
    row = {"lever": name,
           "fold_top1": top1_mean(fold_c["qi"], fold_order, fold_c["tanimoto"], qf, fold_c["n"]),
           "fold_top1_hires_clean": top1_mean(fold_c["qi"], fold_order, fold_c["tanimoto"], qf[fold_c["clean"]],
                                              fold_c["n"]),
           "val_top1": top1_mean(val_c["qi"], val_order, val_c["tanimoto"], qv, val_c["n"]),
           "val_top1_hires_clean": top1_mean(val_c["qi"], val_order, val_c["tanimoto"], qv[val_c["clean"]],
                                             val_c["n"]), **extra}
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def evaluate(fold_c: Feats, val_c: Feats, shipped: Any, save_for: str | None = None) -> list[dict[str, Any]]:
    """Every lever's row; with ``save_for`` (an encoder hash) the :data:`SHIPPED` re-ranker is saved."""
    rows = []
    rows.append(report(f"oracle (best Tanimoto among the {fold_c['pool']} candidates)", fold_c, val_c,
                       fold_c["tanimoto"], val_c["tanimoto"]))
    for f in ("embedding_cosine", "modified_cosine", "entropy"):
        rows.append(report(f"{f} only", fold_c, val_c, fold_c[f], val_c[f]))
    def fixed(c: Feats) -> npt.NDArray[np.float64]:
        return np.asarray(c["entropy"] + c["modified_cosine"] + c["embedding_cosine"], dtype=np.float64)

    rows.append(report("fixed sum", fold_c, val_c, fixed(fold_c), fixed(val_c)))
    if shipped is not None:
        temp = float(shipped.info.get("consensus_temperature", 0.0))
        top = int(shipped.info.get("consensus_top", 0))

        def shipped_order(c: Feats) -> npt.NDArray[np.float64]:
            logit = shipped.linear(c)
            cons = consensus_scores(c["qi"], logit, c["fps"], top=top, temperature=temp)
            return np.where(np.isfinite(cons), 1e3 + cons, logit - 1e3)

        rows.append(report("shipped (fixed sum + structure consensus)", fold_c, val_c, shipped_order(fold_c),
                           shipped_order(val_c)))
    rows.append(report("molecule_cosine only (query spectrum vs candidate structure, cross-modal)", fold_c, val_c,
                       fold_c["molecule_cosine"], val_c["molecule_cosine"]))

    def fixed_mol(c: Feats) -> npt.NDArray[np.float64]:
        return fixed(c) + np.asarray(c["molecule_cosine"], dtype=np.float64)

    rows.append(report("fixed sum + molecule_cosine", fold_c, val_c, fixed_mol(fold_c), fixed_mol(val_c)))
    if "member_cosine" in fold_c:
        rows.append(report("ensemble_cosine only (mean of the model's and the members' cosines)", fold_c, val_c,
                           fold_c["ensemble_cosine"], val_c["ensemble_cosine"]))

        def fixed_ens(c: Feats) -> npt.NDArray[np.float64]:
            return np.asarray(c["entropy"] + c["modified_cosine"] + c["ensemble_cosine"], dtype=np.float64)

        rows.append(report("fixed sum with ensemble_cosine for embedding_cosine", fold_c, val_c, fixed_ens(fold_c),
                           fixed_ens(val_c)))
    rows.extend(direct_weights(fold_c, val_c))
    rows.extend(direct_weights(fold_c, val_c, tuple(f for f in WEIGHT_FEATURES if f != "molecule_cosine"),
                               " without molecule_cosine"))
    # the second stage re-ranks the engine's first stage: the stored ranker (the fixed sum without one)
    # the linear re-ranker serves the annotate job's small pools: it is stored from pools of LINEAR_POOL only
    rows.extend(rerankers(fold_c, val_c, shipped.linear if shipped is not None else fixed,
                          save_for if shipped is not None and fold_c["pool"] == LINEAR_POOL else None, shipped))
    # the trees (and their scale) are stored from engine search's own pool only
    tree_save = save_for if shipped is not None and fold_c["pool"] == AnalogueSettings().n_candidates else None
    rows.extend(tree_rerankers(fold_c, val_c, shipped.linear if shipped is not None else fixed, tree_save, shipped))
    # the linear re-ranker's reliability scale is fitted at the annotate job's pool (the pool it serves)
    if shipped is not None and fold_c["pool"] == AnnotateSettings().analogue_candidates:
        rows.append(linear_scale(fold_c, val_c, shipped, save_for))
    return rows


#: the candidate pool the stored linear re-ranker is fitted on (``--save`` at another pool leaves it as it is)
LINEAR_POOL = 200

WEIGHT_FEATURES = ("entropy", "modified_cosine", "embedding_cosine", "molecule_cosine", "structure_max_entropy",
                   "structure_max_modified", "structure_max_cosine", "structure_cosine", "log_structure_spectra",
                   "log_mass_difference")


Dense = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]


def dense_candidates(c: dict[str, Any], names: tuple[str, ...]) -> Dense:
    """Features ``[query, candidate, feature]``, Tanimoto ``[query, candidate]`` and which slots hold a
    candidate, from the flat candidate rows ``c`` (``qi`` sorted, ``n`` queries)."""
    qi = c["qi"]
    start = np.r_[0, np.flatnonzero(qi[1:] != qi[:-1]) + 1]
    pos = np.arange(len(qi)) - np.repeat(start, np.diff(np.r_[start, len(qi)]))
    width = int(pos.max()) + 1
    x = np.zeros((c["n"], width, len(names)), np.float32)
    y = np.zeros((c["n"], width), np.float32)
    valid = np.zeros((c["n"], width), dtype=bool)
    x[qi, pos] = np.stack([c[f] for f in names], axis=1)
    y[qi, pos] = c["tanimoto"]
    valid[qi, pos] = True
    return x, y, valid


def top1_dense(data: Dense, w: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Tanimoto of each query's best candidate under the weighted sum ``x @ w`` (0 without candidates)."""
    x, y, valid = data
    best = np.argmax(np.where(valid, x @ w, -np.inf), axis=1)
    return np.asarray(y[np.arange(len(best)), best], dtype=np.float32)


def ascend_weights(data: Dense, start: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Coordinate ascent of the weights of a sum on the mean top-1 Tanimoto (3 sweeps, steps -1..1)."""
    w, best = start.copy(), float(top1_dense(data, start).mean())
    for _ in range(3):
        for j in range(len(w)):
            for step in (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0):
                trial = w.copy()
                trial[j] += step
                value = float(top1_dense(data, trial).mean())
                if value > best + 1e-4:
                    best, w = value, trial
    return w


def direct_weights(fold_c: Feats, val_c: Feats, names: tuple[str, ...] = WEIGHT_FEATURES,
                   label: str = "") -> list[dict[str, Any]]:
    """A weighted sum whose weights maximise the fold's mean top-1 Tanimoto directly (from the fixed sum);
    fold figure by 2-fold cross-fitting over its queries."""
    fold_d = dense_candidates(fold_c, names)
    start = np.asarray([1, 1, 1] + [0] * (len(names) - 3), dtype=np.float32)
    half = np.random.default_rng(5).permutation(fold_c["n"]) < fold_c["n"] // 2
    score = np.zeros(fold_c["n"])
    for part in (half, ~half):
        w = ascend_weights(tuple(a[~part] for a in fold_d), start)  # type: ignore[arg-type]
        score[part] = top1_dense(tuple(a[part] for a in fold_d), w)  # type: ignore[arg-type]
    w = ascend_weights(fold_d, start)
    tv = top1_dense(dense_candidates(val_c, names), w)
    row = {"lever": f"weighted sum{label}, weights by coordinate ascent on the fold's top-1 Tanimoto",
           "fold_top1": float(score.mean()), "fold_top1_hires_clean": float(score[fold_c["clean"]].mean()),
           "val_top1": float(tv.mean()), "val_top1_hires_clean": float(tv[val_c["clean"]].mean()),
           "coef": dict(zip(names, (float(v) for v in w), strict=True))}
    print(row, flush=True)
    return [row]


BASE_FEATURES = ("embedding_cosine", "structure_cosine", "log_structure_spectra", "modified_cosine", "entropy",
                 "log_mass_difference", "library_quality", "structure_max_modified", "structure_max_entropy",
                 "structure_max_cosine")


#: the re-ranker the engine ships and its target temperature (chosen on the fold: best cross-validated top-1
#: Tanimoto there among the variants below and target temperatures 0.05-1.0 at top 20 / 30 / 50)
SHIPPED = ("consensus + base features", 1.0)


def rerankers(fold_c: Feats, val_c: Feats, first: Callable[[Feats], npt.NDArray[np.float64]],
              save_for: str | None = None, first_cal: Any = None) -> list[dict[str, Any]]:
    """Second-stage listwise re-rankers over each query's top ``K`` by ``first``, with consensus features."""
    rows = []
    n_f = fold_c["n"]
    perm = np.random.default_rng(5).permutation(n_f)
    part = np.empty(n_f, dtype=np.int64)
    part[perm] = np.arange(n_f) % 5
    spread_f = float(np.std(first(fold_c)))
    for top in (30,):
        factors = (0.1, 0.2, 0.5, 1e3)
        stage: dict[str, Feats] = {}
        for name, c in (("fold", fold_c), ("val", val_c)):
            logit = first(c)
            cons = with_consensus(c, logit, c["fps"], top, factors, spread_f)
            inside = np.isfinite(cons[f"consensus_{factors[0]}"])
            sub: Feats = {k: v[inside] for k, v in c.items()
                          if isinstance(v, np.ndarray) and v.shape[:1] == inside.shape}
            sub.update({k: v[inside] for k, v in cons.items()})
            sub["first_logit"] = logit[inside]
            sub["n"], sub["clean"] = c["n"], c["clean"]
            stage[name] = sub
        f_s, v_s = stage["fold"], stage["val"]
        for label, names in (
                ("consensus 0.2 + first", ("first_logit", "consensus_0.2")),
                ("consensus (4 temperatures) + first", ("first_logit", *[f"consensus_{f}" for f in factors])),
                ("consensus + base features", ("first_logit", *[f"consensus_{f}" for f in factors], *BASE_FEATURES)),
                ("consensus + base features + molecule_cosine", ("first_logit", *[f"consensus_{f}" for f in factors],
                                                                 *BASE_FEATURES, "molecule_cosine")),
                *((("consensus + base features + member_cosine", ("first_logit", *[f"consensus_{f}" for f in factors],
                                                                  *BASE_FEATURES, "member_cosine")),)
                  if "member_cosine" in f_s else ()),
        ):
            for temp in (0.1, 0.5, 1.0):
                cv = np.zeros(len(f_s["qi"]))
                for k in range(5):
                    tr = part[f_s["qi"]] != k
                    cal = fit_listwise("cv", {f: f_s[f][tr] for f in names}, f_s["qi"][tr], f_s["tanimoto"][tr],
                                       feature_names=names, temperature=temp)
                    cv[~tr] = cal.linear({f: f_s[f][~tr] for f in names})
                cal = fit_listwise("rerank", {f: f_s[f] for f in names}, f_s["qi"], f_s["tanimoto"],
                                   feature_names=names, temperature=temp)
                rows.append(report(f"re-rank top {top}: {label} (listwise, T={temp})", f_s, v_s, cv,
                                   cal.linear(v_s), coef=dict(zip(names, cal.coef, strict=True))))
                if (label, temp) == SHIPPED and save_for is not None:  # consensus features named as in the engine
                    stored = tuple(consensus_name(factors.index(float(n.split("_")[1]))) if n.startswith("consensus_")
                                   else n for n in names)
                    info = {"kind": "second-stage listwise re-ranker", "top": top,
                            "temperatures": [f * spread_f for f in factors], "target_temperature": temp,
                            "first_stage": first_stage_info(first_cal),
                            "fitted_on": "calibration fold of train (queries) vs train outside the fold",
                            "queries": fold_c["n"], "fold_cv_top1": rows[-1]["fold_top1"]}
                    dataclasses.replace(cal, name=ANALOGUE_RERANKER, features=stored, encoder_hash=save_for,
                                        info=info).save()
    return rows


#: tree re-ranker variants (candidates re-scored per query, max leaf nodes, boosting iterations); the engine
#: ships the best by the fold's cross-validated top-1 Tanimoto (folds grouped by the query's structure)
TREE_VARIANTS = ((TREE_MIN_POOL, 15, 200), (TREE_MIN_POOL, 31, 300), (TREE_MIN_POOL, 63, 300), (60, 31, 300),
                 (60, 63, 300))


def tree_rerankers(fold_c: Feats, val_c: Feats, first: Callable[[Feats], npt.NDArray[np.float64]],
                   save_for: str | None = None, first_cal: Any = None) -> list[dict[str, Any]]:
    """Second-stage gradient-boosted trees (MS2Query-style, predicting the candidate's Tanimoto) over each
    query's best ``top`` by ``first`` (:data:`TREE_VARIANTS`), with :func:`engine.queries.rerank.tree_features`;
    fold figures by 5-fold cross-validation grouped by the query's structure (queries of one structure share
    a part)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from engine.models.training.config import REDISTRIBUTABLE_LICENSES
    from engine.models.trees import from_sklearn

    spread = float(np.std(first(fold_c)))
    logits = {name: first(c) for name, c in (("fold", fold_c), ("val", val_c))}
    structure = fold_c["query_structure"]
    uniq, inverse = np.unique(structure, return_inverse=True)
    part = (np.random.default_rng(5).permutation(len(uniq)) % 5)[inverse][fold_c["qi"]]
    rows, best = [], (-1.0, None, "", 0, ())
    for top in sorted({v[0] for v in TREE_VARIANTS}):
        pairs = tree_consensus_pairs(top)
        data = {}
        for name, c in (("fold", fold_c), ("val", val_c)):
            cons = Consensus(c["qi"], logits[name], c["fps"])
            feats = tree_features(c["qi"], c, logits[name], cons, spread, pairs, top)
            names = tuple(feats)
            data[name] = (np.stack([feats.pop(f) for f in names], axis=1).astype(np.float32),
                          np.isfinite(cons(top, 1e3)))
        (x_f, in_f), (x_v, in_v) = data["fold"], data["val"]
        for _, leaves, iterations in (v for v in TREE_VARIANTS if v[0] == top):
            params = {"max_leaf_nodes": leaves, "max_iter": iterations, "learning_rate": 0.05,
                      "min_samples_leaf": 200, "random_state": 0}
            cv = np.zeros(len(fold_c["qi"]))
            for k in range(5):
                train, test = (part != k) & in_f, (part == k) & in_f
                model = HistGradientBoostingRegressor(**params).fit(x_f[train], fold_c["tanimoto"][train])
                cv[test] = model.predict(x_f[test])
            model = HistGradientBoostingRegressor(**params).fit(x_f[in_f], fold_c["tanimoto"][in_f])
            pred_v = np.zeros(len(val_c["qi"]))
            pred_v[in_v] = model.predict(x_v[in_v])
            label = f"re-rank top {top}: gradient-boosted trees, {leaves} leaves x {iterations} (predicted Tanimoto)"
            rows.append(report(label, fold_c, val_c, np.where(in_f, 1e3 + cv, logits["fold"] - 1e3),
                               np.where(in_v, 1e3 + pred_v, logits["val"] - 1e3)))
            if rows[-1]["fold_top1"] > best[0]:
                best = (rows[-1]["fold_top1"], model, label, top, pairs, names, len(rows) - 1)
                predictions = (np.where(in_f, cv, 0.0), pred_v)
                insides = (in_f, in_v)
        del data, x_f, x_v
    if best[1] is None or first_cal is None:
        return rows
    _, chosen, label, top, pairs, names, at = best
    info = {"kind": "second-stage gradient-boosted regression trees (predicted Tanimoto)", "top": top,
            "pool": fold_c["pool"], "spread": spread, "consensus": [list(p) for p in pairs], "chosen": label,
            "first_stage": first_stage_info(first_cal),
            "fitted_on": "calibration fold of train (queries) vs train outside the fold",
            "queries": fold_c["n"], "fold_cv_top1": best[0], "licences": sorted(REDISTRIBUTABLE_LICENSES)}
    trees = from_sklearn(chosen, ANALOGUE_RERANK_TREES, names, encoder_hash=save_for, info=info)
    scale, reliability = tree_scale(fold_c, val_c, first_cal, (logits["fold"], logits["val"]), insides, predictions,
                                    trees.content_sha(), save_for, info)
    rows[at]["reliability_val"] = reliability
    if save_for is not None:
        trees.save()
        scale.save()
    return rows


def scale_features(c: Feats, logit: npt.NDArray[np.float64], first_cal: Any, consensus: Consensus | None = None
                   ) -> Feats:
    """The per-row features a reliability scale reads: the candidates' own, with the first stage's structure
    consensus (``consensus`` of these rows under ``logit`` when already made)."""
    top = int(first_cal.info.get("consensus_top", 0))
    temperature = float(first_cal.info.get("consensus_temperature", 0.0))
    cons = consensus if consensus is not None else Consensus(c["qi"], logit, c["fps"])
    feats = {k: v for k, v in c.items() if isinstance(v, np.ndarray) and v.shape == c["qi"].shape}
    feats["consensus"] = np.nan_to_num(cons(top, temperature), nan=0.0)
    return feats


def top_hit_inputs(c: Feats, feats: Feats, logit: npt.NDArray[np.float64], order: npt.NDArray[np.float64]
                   ) -> tuple[Feats, npt.NDArray[np.float64]]:
    """A scale's inputs at each query's top hit under ``order`` (rank 1), and the hit's Tanimoto."""
    keep, _ = top_per_query(c["qi"], order, 1)
    sub = {k: v[keep] for k, v in feats.items()}
    sub["rank_logit"], sub["log_rank"] = logit[keep], np.zeros(len(keep))
    return sub, c["tanimoto"][keep]


def linear_scale(fold_c: Feats, val_c: Feats, first_cal: Any, save_for: str | None) -> dict[str, Any]:
    """The reliability scale of hits in the stored linear re-ranker's order (the annotate job's path), fitted on
    the top 10 per fold query in that order at this pool (soft label: the hit's Tanimoto; the re-ranker has 15
    coefficients, so its in-sample order on the fold is kept); the row gives the val reliability of the top hit
    with the general scale (``analogue_scale.json``, fitted in first-stage order at 200 candidates) and with
    this one. Saved as :data:`engine.queries.rerank.ANALOGUE_LINEAR_SCALE` with ``save_for``."""
    from benchmarks.search.calibrate import ANALOGUE_SCALE_FEATURES, fit_scale
    from engine.models.calibration import reliability_table
    from engine.queries.analogue import ANALOGUE_SCALE
    from engine.queries.rerank import ANALOGUE_LINEAR_SCALE, first_stage_info, load_reranker, rerank_order

    encoder_hash = first_cal.encoder_hash
    reranker = load_reranker(encoder_hash)
    general = load_calibration(ANALOGUE_SCALE, encoder_hash)
    if reranker is None or general is None:
        raise SystemExit("the linear scale needs the stored linear re-ranker and analogue scale of this model")
    prepared = []
    for c in (fold_c, val_c):
        logit = first_cal.linear(c)
        cons = Consensus(c["qi"], logit, c["fps"])  # one Tanimoto block for the scale's consensus and the re-ranker
        feats = scale_features(c, logit, first_cal, cons)
        prepared.append((feats, logit, rerank_order(feats, logit, cons, reranker)))
    info = {"kind": "reliability of hits in the linear re-ranker's order", "pool": fold_c["pool"],
            "reranker": first_stage_info(reranker), "target": "Tanimoto of the hit, soft label",
            "fitted_on": "calibration fold of train (queries) vs train outside the fold", "queries": fold_c["n"]}
    scale = fit_scale(ANALOGUE_LINEAR_SCALE, fold_c["qi"], prepared[0][0], first_cal, fold_c["tanimoto"],
                      ANALOGUE_SCALE_FEATURES, save_for, info, order=prepared[0][2])
    feats_v, logit_v, order_v = prepared[1]
    sub, truth = top_hit_inputs(val_c, feats_v, logit_v, order_v)
    tables = {name: reliability_table(cal.predict(sub), truth) for name, cal in (("general", general),
                                                                                    ("linear", scale))}
    row = report(f"linear re-ranker (stored) at {fold_c['pool']} candidates, scored by its own scale", fold_c,
                 val_c, prepared[0][2], order_v,
                 val_mean_reliability_general=float(general.predict(sub).mean()),
                 val_mean_reliability_linear=float(scale.predict(sub).mean()),
                 val_mean_tanimoto_of_hits=float(truth.mean()))
    row["reliability_val_linear"] = tables
    if save_for is not None:
        scale.save()
    return row


def tree_scale(fold_c: Feats, val_c: Feats, first_cal: Any, logits: tuple[npt.NDArray[np.float64], ...],
               inside: tuple[npt.NDArray[np.bool_], ...], predictions: tuple[npt.NDArray[np.float64], ...],
               trees_sha: str, encoder_hash: str | None, info: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The reliability scale of tree-ordered hits (the analogue scale's features plus ``predicted_tanimoto``),
    fitted on the top 10 per fold query in the order of the trees' cross-validated predictions (soft label:
    the hit's Tanimoto); with its reliability table on val (top hit, the trees fitted on the whole fold)."""
    from benchmarks.search.calibrate import ANALOGUE_SCALE_FEATURES, fit_scale
    from engine.models.calibration import reliability_table
    from engine.queries.rerank import ANALOGUE_RERANK_SCALE

    prepared = []
    for c, logit, ins, pred in zip((fold_c, val_c), logits, inside, predictions, strict=True):
        feats = scale_features(c, logit, first_cal)
        feats["predicted_tanimoto"] = np.where(ins, pred, 0.0)
        prepared.append((feats, np.where(ins, 1e3 + pred, logit - 1e3)))
    names = (*ANALOGUE_SCALE_FEATURES, "predicted_tanimoto")
    scale = fit_scale(ANALOGUE_RERANK_SCALE, fold_c["qi"], prepared[0][0], first_cal, fold_c["tanimoto"], names,
                      encoder_hash, {**info, "kind": "reliability of tree-ordered analogue hits",
                                     "target": "Tanimoto of the hit, soft label", "trees_sha": trees_sha},
                      order=prepared[0][1])
    sub, truth = top_hit_inputs(val_c, prepared[1][0], logits[1], prepared[1][1])
    return scale, reliability_table(scale.predict(sub), truth)


if __name__ == "__main__":
    main()
