"""Fit the identity and analogue calibrations on the calibration fold of ``train`` (never on val).

The calibration fold is the 8% of train structures (whole scaffold groups) the model was not trained
on (:func:`benchmarks.search.common.calibration_fold`), so embedding cosines there behave as on new data.

* identity: queries = one spectrum per (structure, ion mode) of the fold with >= 2 spectra; library =
  all other train spectra. Every window candidate is a row, label = same structure (InChIKey block 1).
  Writes ``identity_rank.json`` (logistic over all window candidates, with the embedding cosine, for
  this model's encoder hash) and ``identity_scale.json`` (logistic from the ranker's logit and the rank to
  P(same structure), fitted on each query's top 10), and the model-free spectral pair
  ``identity_spectral_rank.json`` / ``identity_spectral_scale.json``.
* analogue: queries = fold spectra; library = train spectra outside the fold (so the query's structure
  is absent, as for val). The 100 nearest candidates per query are rows, target = Tanimoto of the
  structures (RDKit fingerprint, 2048 bits). Writes ``analogue_rank.json`` (listwise linear ranker) and
  ``analogue_scale.json`` (reliability: logistic with the Tanimoto as soft label on each query's top 10).

Only records whose licence allows redistribution (CC0, CC BY, CC BY-SA, dl-de/by-2-0) are used, queries
and libraries alike, as for the bundled model (``--all-licences`` to use every record, not for shipping).

Usage: ``python benchmarks/search/calibrate.py [--model CKPT] [--max-analogue-queries 4000]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also runnable as a script

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.search.common import build_library, calibration_fold, embed
from benchmarks.search.data import SPECTRA, fingerprints, tanimoto
from engine.models.calibration import Calibration, fit_listwise, fit_logistic, reliability_table
from engine.queries.analogue import (
    ANALOGUE_RANKER,
    ANALOGUE_SCALE,
    AnalogueSettings,
    analogue_candidates,
    analogue_order,
    consensus_scores,
)
from engine.queries.hits import top_per_query
from engine.queries.identity import (
    IDENTITY_RANKER,
    IDENTITY_SCALE,
    SPECTRAL_RANKER,
    SPECTRAL_SCALE,
    IdentitySettings,
    identity_candidates,
)

ANALOGUE_RANK_FEATURES = ("embedding_cosine", "structure_cosine", "log_structure_spectra", "modified_cosine",
                          "entropy", "log_mass_difference", "library_quality", "structure_max_modified",
                          "structure_max_entropy", "structure_max_cosine")
ANALOGUE_TEMPERATURE = 0.2
ANALOGUE_SCALE_FEATURES = ("rank_logit", "log_rank", "quality", "embedding_cosine", "modified_cosine", "entropy",
                           "consensus")
CONSENSUS_TOP = 30
CONSENSUS_FACTORS = (0.1, 0.2, 0.3, 0.4, 0.5, 1.0)
FIXED_SUM = ("entropy", "modified_cosine", "embedding_cosine")
#: the greedy cosine and matched peaks were dropped from the model-specific ranker: on the calibration fold
#: their weight was ~0 and top-1 accuracy identical without them, and they cost 40% of the re-scoring time
IDENTITY_FEATURES = ("embedding_cosine", "entropy", "precursor_error", "entropy_gap", "embedding_gap")
SPECTRAL_FEATURES = ("entropy", "cosine", "log_matches", "precursor_error", "entropy_gap")
COLUMNS = ["spectrum_id", "mz", "intensity", "precursor_mz", "charge", "ion_mode", "adduct", "smiles", "inchikey",
           "inchikey14", "formula", "name", "split", "license", "murcko_scaffold"]


def load_table(path: Path = SPECTRA) -> pa.Table:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=COLUMNS)
    return t.filter(pc.and_(pc.is_valid(t.column("precursor_mz")), pc.greater(pc.list_value_length(t.column("mz")), 0)))


def batched_candidates(func: Any, table: pa.Table, queries: npt.NDArray[np.int64], emb: npt.NDArray[np.float32],
                       quality: npt.NDArray[np.float32], library: Any, refs: Any, settings: Any,
                       batch: int = 1024) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, Any]]:
    """Candidates of all queries (query position, library row, features), in batches."""
    qs, rs, fs = [], [], []
    for s in range(0, len(queries), batch):
        part = queries[s:s + batch]
        cand = func(table.take(pa.array(part)), library, refs, (emb[part], quality[part]), settings)
        qs.append(cand.query_index + s)
        rs.append(cand.row_id)
        fs.append(cand.features)
    feats = {k: np.concatenate([f[k] for f in fs if f]) for k in next(f for f in fs if f)}
    return np.concatenate(qs), np.concatenate(rs), feats


def top1_metric(qi: npt.NDArray[np.int64], score: npt.NDArray[np.float64], value: npt.NDArray[np.float64],
                n_queries: int) -> float:
    """Mean of ``value`` at each query's best-scoring row (queries without rows count 0)."""
    keep, _ = top_per_query(qi, score, 1)
    return float(value[keep].sum() / n_queries)


def fit_scale(name: str, qi: npt.NDArray[np.int64], feats: dict[str, Any], ranker: Calibration,
              label: npt.NDArray[np.float64], names: tuple[str, ...], encoder_hash: str | None,
              info: dict[str, Any], top_k: int = 10, order: npt.NDArray[np.float64] | None = None) -> Calibration:
    """Logistic scale of the reported score, fitted on the top ``top_k`` rows per query (by ``order``, else
    by ``ranker``)."""
    logit = ranker.linear(feats)
    keep, rank = top_per_query(qi, logit if order is None else order, top_k)
    sub = {k: v[keep] for k, v in feats.items()}
    sub["rank_logit"], sub["log_rank"] = logit[keep], np.log(rank.astype(np.float64))
    return fit_logistic(name, sub, label[keep], feature_names=names, encoder_hash=encoder_hash,
                        info={**info, "rows": f"top {top_k} per query by {ranker.name}"})


def fit_identity(table: pa.Table, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
                 fold: npt.NDArray[np.bool_], encoder_hash: str, work: Path) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    keys = np.asarray(table.column("inchikey14").to_pylist(), dtype=object)
    modes = np.asarray(table.column("ion_mode").to_pylist(), dtype=object)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in np.flatnonzero(fold):
        groups.setdefault((keys[i], modes[i]), []).append(int(i))
    queries = np.asarray(sorted(int(rng.choice(g)) for g in groups.values() if len(g) >= 2), dtype=np.int64)
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    lib_rows = np.setdiff1d(np.flatnonzero(split == "train"), queries)
    index, refs, _ = build_library(work / "identity", table, lib_rows, emb, quality, encoder_hash=encoder_hash)
    settings = IdentitySettings()
    qi, rows, feats = batched_candidates(identity_candidates, table, queries, emb, quality, index, refs, settings)
    label = (keys[rows] == keys[queries[qi]]).astype(np.float64)
    n = len(queries)
    info = {"fitted_on": "calibration fold of train (structures held out of model training)",
            "licences": sorted(set(table.column("license").to_pylist())), "queries": n,
            "pairs": len(qi)}
    out: dict[str, Any] = {"queries": n, "pairs": len(qi), "positives": int(label.sum())}
    ranker = fit_logistic(IDENTITY_RANKER, feats, label, feature_names=IDENTITY_FEATURES,
                          encoder_hash=encoder_hash, info=info)
    scale = fit_scale(IDENTITY_SCALE, qi, feats, ranker, label, ("rank_logit", "log_rank"),
                               encoder_hash, info)
    s_ranker = fit_logistic(SPECTRAL_RANKER, feats, label, feature_names=SPECTRAL_FEATURES, info=info)
    s_scale = fit_scale(SPECTRAL_SCALE, qi, feats, s_ranker, label, ("rank_logit", "log_rank"), None, info)
    for name, score in (("entropy", feats["entropy"]), ("cosine", feats["cosine"]),
                        ("embedding_cosine", feats["embedding_cosine"]),
                        ("spectral_ranker", s_ranker.linear(feats)), ("ranker", ranker.linear(feats))):
        out[f"top1_{name}"] = top1_metric(qi, score, label, n)
    top1, _ = top_per_query(qi, ranker.linear(feats), 1)
    sub = {k: v[top1] for k, v in feats.items()}
    sub["rank_logit"], sub["log_rank"] = ranker.linear(feats)[top1], np.zeros(len(top1))
    out["reliability_top1"] = reliability_table(scale.predict(sub), label[top1])
    for cal in (ranker, scale, s_ranker, s_scale):
        cal.save()
    return out


def fit_analogue(table: pa.Table, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
                 fold: npt.NDArray[np.bool_], encoder_hash: str, work: Path, max_queries: int) -> dict[str, Any]:
    rng = np.random.default_rng(2)
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    lib_rows = np.flatnonzero((split == "train") & ~fold)
    queries = np.flatnonzero(fold)
    if len(queries) > max_queries:
        queries = np.sort(rng.choice(queries, max_queries, replace=False))
    index, refs, _ = build_library(work / "analogue", table, lib_rows, emb, quality, encoder_hash=encoder_hash)
    settings = AnalogueSettings()
    qi, rows, feats = batched_candidates(analogue_candidates, table, queries, emb, quality, index, refs, settings)
    smiles = table.column("smiles").to_pylist()
    uniq, inverse = np.unique(np.asarray(smiles, dtype=object).astype(str), return_inverse=True)
    fps = fingerprints(uniq.tolist())
    tani = tanimoto(fps[inverse[queries[qi]]], fps[inverse[rows]])
    n = len(queries)
    info = {"fitted_on": "calibration fold of train (queries) vs train outside the fold",
            "licences": sorted(set(table.column("license").to_pylist())),
            "target": "Tanimoto (RDKit fingerprint, 2048 bits)", "queries": n, "pairs": len(qi)}
    listwise = fit_listwise(ANALOGUE_RANKER, feats, qi, tani, feature_names=ANALOGUE_RANK_FEATURES,
                            temperature=ANALOGUE_TEMPERATURE, encoder_hash=encoder_hash, info=info)
    fixed = Calibration(ANALOGUE_RANKER, features=FIXED_SUM, coef=(1.0,) * len(FIXED_SUM), intercept=0.0,
                        mean=(0.0,) * len(FIXED_SUM), scale=(1.0,) * len(FIXED_SUM), encoder_hash=encoder_hash,
                        info={**info, "kind": "fixed sum of entropy, modified cosine and embedding cosine"})
    out: dict[str, Any] = {"queries": int(n), "pairs": len(qi)}
    for name, score in (("embedding_cosine", feats["embedding_cosine"]),
                        ("structure_cosine", feats["structure_cosine"]),
                        ("modified_cosine", feats["modified_cosine"]), ("entropy", feats["entropy"]),
                        ("listwise", listwise.linear(feats)), ("fixed_sum", fixed.linear(feats))):
        out[f"top1_tanimoto_{name}"] = top1_metric(qi, score, tani, n)
    # choose the ranker and the structure-consensus temperature (relative to the spread of the ranker's
    # logits) on the fold: the best mean top-1 Tanimoto
    fps = refs.structure_fingerprints(rows)
    best = (-1.0, fixed, 0.0)
    for name, candidate in (("listwise", listwise), ("fixed_sum", fixed)):
        logit = candidate.linear(feats)
        spread = float(np.std(logit))
        if out[f"top1_tanimoto_{name}"] > best[0]:
            best = (out[f"top1_tanimoto_{name}"], candidate, 0.0)
        for factor in CONSENSUS_FACTORS:
            cons = consensus_scores(qi, logit, fps, top=CONSENSUS_TOP, temperature=factor * spread)
            value = top1_metric(qi, np.where(np.isfinite(cons), 1e3 + cons, logit - 1e3), tani, n)
            out[f"top1_tanimoto_{name}_consensus_{factor}"] = value
            if value > best[0]:
                best = (value, candidate, factor * spread)
    ranker = best[1]
    if best[2] > 0:
        ranker = dataclasses.replace(ranker, info={**ranker.info, "consensus_top": CONSENSUS_TOP,
                                                   "consensus_temperature": best[2]})
    out["chosen"] = {"ranker": ranker.info.get("kind"), "consensus_temperature": best[2], "top1_tanimoto": best[0]}
    order = analogue_order(qi, feats, rows, refs, ranker)
    feats.setdefault("consensus", np.zeros(len(qi)))
    scale = fit_scale(ANALOGUE_SCALE, qi, feats, ranker, tani, ANALOGUE_SCALE_FEATURES, encoder_hash,
                      {**info, "target": "Tanimoto of the hit, soft label"}, order=order)
    out["ranker"] = dict(zip(ranker.features, ranker.coef, strict=True))
    out["scale"] = dict(zip(scale.features, scale.coef, strict=True))
    ranker.save()
    scale.save()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--max-analogue-queries", type=int, default=4000)
    parser.add_argument("--all-licences", action="store_true",
                        help="also fit on records whose licence does not allow redistribution (not for shipping)")
    args = parser.parse_args()
    from engine.jobs.artifacts import open_model

    model = open_model(args.model)
    table = load_table()
    if not args.all_licences:  # what ships is fitted on records whose licence allows redistribution
        from engine.models.training.config import REDISTRIBUTABLE_LICENSES

        table = table.filter(pc.is_in(table.column("license"), pa.array(list(REDISTRIBUTABLE_LICENSES))))
    emb, quality, seconds = embed(model, table)
    fold = calibration_fold(table)
    print(f"embedded {table.num_rows} spectra in {seconds:.1f} s; calibration fold: {int(fold.sum())} spectra")
    with tempfile.TemporaryDirectory() as tmp:
        ident = fit_identity(table, emb, quality, fold, model.encoder_hash, Path(tmp))
        print("identity:", json.dumps({k: v for k, v in ident.items() if k != "reliability_top1"}, indent=1))
        for row in ident["reliability_top1"]:
            print("  ", row)
        ana = fit_analogue(table, emb, quality, fold, model.encoder_hash, Path(tmp), args.max_analogue_queries)
        print("analogue:", json.dumps(ana, indent=1))


if __name__ == "__main__":
    main()
