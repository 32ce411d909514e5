"""Fit the identity and analogue calibrations on the calibration fold of ``train`` (never on val).

The calibration fold is the 8% of train structures (whole scaffold groups) the model was not trained
on (:func:`benchmarks.search.common.calibration_fold`), so embedding cosines there behave as on new data.

* identity: queries = one spectrum per (structure, ion mode) of the fold with >= 2 spectra; library =
  all other train spectra. Every window candidate is a row, label = same structure (InChIKey block 1).
  Writes ``identity.json`` (with the embedding cosine, for this model's encoder hash) and
  ``identity_spectral.json`` (spectral features only, model-free fallback).
* analogue: queries = fold spectra; library = train spectra outside the fold (so the query's structure
  is absent, as for val). The 100 nearest candidates per query are rows, soft label = Tanimoto of the
  structures (RDKit fingerprint, 2048 bits). Writes ``analogue.json``.

Usage: ``python -m benchmarks.search.calibrate [--model CKPT] [--max-analogue-queries 4000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from benchmarks.search.common import build_library, calibration_fold, embed
from benchmarks.search.data import SPECTRA, fingerprints, tanimoto
from engine.queries.analogue import AnalogueSettings, analogue_candidates
from engine.queries.calibration import fit_logistic, reliability_table
from engine.queries.hits import top_per_query
from engine.queries.identity import IdentitySettings, identity_candidates

IDENTITY_FEATURES = ("embedding_cosine", "entropy", "cosine", "log_matches", "precursor_error", "entropy_gap",
                     "embedding_gap")
SPECTRAL_FEATURES = ("entropy", "cosine", "log_matches", "precursor_error", "entropy_gap")
ANALOGUE_FEATURES = ("embedding_cosine", "structure_cosine", "log_structure_spectra", "modified_cosine",
                     "log_mass_difference", "quality", "library_quality")
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
    out: dict[str, Any] = {"queries": len(queries), "pairs": len(qi), "positives": int(label.sum())}
    cal = fit_logistic("identity", feats, label, feature_names=IDENTITY_FEATURES, encoder_hash=encoder_hash,
                       info={"fitted_on": "calibration fold of train (structures held out of model training)",
                             "queries": len(queries), "pairs": len(qi)})
    spectral = fit_logistic("identity_spectral", feats, label, feature_names=SPECTRAL_FEATURES,
                            info={"fitted_on": "calibration fold of train", "queries": len(queries),
                                  "pairs": len(qi)})
    n = len(queries)
    for name, score in (("entropy", feats["entropy"]), ("cosine", feats["cosine"]),
                        ("embedding_cosine", feats["embedding_cosine"]), ("spectral_calibrated",
                                                                           spectral.predict(feats)),
                        ("calibrated", cal.predict(feats))):
        out[f"top1_{name}"] = top1_metric(qi, score, label, n)
    keep, _ = top_per_query(qi, cal.predict(feats), 1)
    out["reliability_top1"] = reliability_table(cal.predict(feats)[keep], label[keep])
    cal.save()
    spectral.save()
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
    cal = fit_logistic("analogue", feats, tani, feature_names=ANALOGUE_FEATURES, encoder_hash=encoder_hash,
                       info={"fitted_on": "calibration fold of train (queries) vs train outside the fold",
                             "target": "Tanimoto (RDKit fingerprint, 2048 bits), soft labels",
                             "queries": len(queries), "pairs": len(qi)})
    n = len(queries)
    out: dict[str, Any] = {"queries": int(n), "pairs": len(qi)}
    for name, score in (("embedding_cosine", feats["embedding_cosine"]),
                        ("structure_cosine", feats["structure_cosine"]),
                        ("modified_cosine", feats["modified_cosine"]), ("calibrated", cal.predict(feats))):
        out[f"top1_tanimoto_{name}"] = top1_metric(qi, score, tani, n)
    out["coef"] = dict(zip(cal.features, cal.coef, strict=True))
    cal.save()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--max-analogue-queries", type=int, default=4000)
    args = parser.parse_args()
    from engine.model import load_model

    model = load_model(args.model)
    table = load_table()
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
