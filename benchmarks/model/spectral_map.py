"""Issue 18 lever: predict a spectrum pair's Tanimoto from the embedding cosine *and* spectral similarity.

The shipped prediction maps the embedding cosine through a monotone, bin-balanced map per mode pairing
(``engine.models.tanimoto_map``). MS2Query-style, a pair's exact spectral similarities (modified cosine and
its matched peaks at 0.1 Da on square-root intensities, entropy similarity at 0.02 Da) carry evidence the
embedding may have lost. Here gradient-boosted regression trees predict the Tanimoto from the calibrated
cosine (default model, or the mean of the ensemble members' calibrated predictions), the mode pairing and
those similarities, fitted on bin-balanced pairs of the clean calibration fold of train (20,000 per
Tanimoto bin and pairing) and measured on bin-balanced pairs of clean val (30,000 per bin and pairing,
another seed) as the mean over the ten 0.1 bins of the RMSE (the issue's target: <= 0.17). The trees on the
calibrated cosine alone separate what the extra capacity gives from what the similarities give.

Reads the embeddings cached by ``benchmarks/model/ensemble_fit.py --cache DIR`` (computed here the same way
when absent). Usage::

    python -m benchmarks.model.spectral_map [--cache runs/ensemble_fit]
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._results import markdown_table, write_results
from benchmarks.model import ensemble_fit
from benchmarks.model.run import ROOT
from engine.core.paths import ENSEMBLE_MEMBERS
from engine.core.peaks import Peaks
from engine.jobs.artifacts import open_model
from engine.models.tanimoto_map import PAIRINGS, balanced_pairs, load_tanimoto_map, mode_pairing
from engine.queries.similarity import entropy_similarity, modified_cosine, prepare_entropy, top_peaks

HERE = Path(__file__).resolve().parent
SPECTRAL = ("modified_cosine", "log_matches", "entropy")
PER_BIN = {"fold": 20_000, "val": 30_000}


class _Unpickler(pickle.Unpickler):
    """Reads ensemble_fit's cache, written while it ran as ``__main__``."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and name == "Split":
            return ensemble_fit.Split
        return super().find_class(module, name)


def pair_features(split: str, sp: Any, table: Any, maps: list[Any]) -> dict[str, npt.NDArray[np.float64]]:
    """Bin-balanced pairs of one split with their calibrated cosines (default, ensemble), similarities, truth."""
    pairs = balanced_pairs(sp.struct_of, sp.positive, sp.tanimoto, PER_BIN[split],
                           np.random.default_rng(0 if split == "fold" else 1))
    a = np.concatenate([pairs[p][0] for p in PAIRINGS])
    b = np.concatenate([pairs[p][1] for p in PAIRINGS])
    peaks = Peaks.from_arrow(table)
    sqrt = top_peaks(peaks, 100, sqrt=True)
    mod_cos, matches = modified_cosine(sqrt, sqrt, a, b, tolerance=0.1)
    entropy = prepare_entropy(peaks)
    pairing = mode_pairing(sp.positive[a], sp.positive[b])
    calibrated = [m.apply(np.einsum("ij,ij->i", e[a], e[b]).astype(np.float64), pairing)
                  for e, m in zip(sp.embeddings, maps, strict=True)]
    return {"default": calibrated[0], "ensemble": np.mean(calibrated, axis=0), "pairing": pairing.astype(np.float64),
            "modified_cosine": np.asarray(mod_cos, np.float64), "log_matches": np.log1p(matches.astype(np.float64)),
            "entropy": np.asarray(entropy_similarity(entropy, entropy, a, b), np.float64),
            "true": sp.tanimoto[sp.struct_of[a], sp.struct_of[b]].astype(np.float64)}


def per_bin_rmse(pred: npt.NDArray[np.float64], true: npt.NDArray[np.float64]) -> list[float]:
    bins = np.minimum((true * 10).astype(np.int64), 9)
    return [float(np.sqrt(np.mean((pred[bins == k] - true[bins == k]) ** 2))) for k in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", type=Path, default=None, help="ensemble_fit's cache of each split's embeddings")
    args = parser.parse_args()
    from sklearn.ensemble import HistGradientBoostingRegressor

    member_files = [ROOT / "engine" / "data" / "model" / "default.pt", *sorted(ENSEMBLE_MEMBERS.glob("*.pt"))]
    models = [open_model(f) for f in member_files]
    maps = [load_tanimoto_map(m.encoder_hash, directory=(ROOT / "engine" / "data" / "calibration"
                                                          if f.name == "default.pt" else ROOT / "runs" / f.stem))
            for f, m in zip(member_files, models, strict=True)]
    if any(m is None for m in maps):
        raise SystemExit("every member needs its tanimoto_map.json (tools/fit_tanimoto_map.py)")
    feats = {}
    for split in ("fold", "val"):
        file = args.cache / f"{split}.pkl" if args.cache is not None else None
        sp = (_Unpickler(file.open("rb")).load() if file is not None and file.is_file()
              else ensemble_fit.collect(Path(args.data), split, models, 0))
        feats[split] = pair_features(split, sp, ensemble_fit.spectra(Path(args.data), split, models[0]), maps)
        print(split, feats[split]["true"].shape[0], "pairs", flush=True)
    fold, val = feats["fold"], feats["val"]
    rows: list[dict[str, Any]] = []
    for base in ("default", "ensemble"):
        label = "default model" if base == "default" else "ensemble (mean of the members' calibrated predictions)"
        rows.append({"prediction": f"{label}: shipped map(s)", "per_bin": per_bin_rmse(val[base], val["true"])})
        for name, extra in (("trees on it and the mode pairing", ()),
                            ("trees + modified cosine, matched peaks, entropy", SPECTRAL)):
            names = (base, "pairing", *extra)
            trees = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                                  min_samples_leaf=100, random_state=0)
            trees.fit(np.stack([fold[n] for n in names], axis=1), fold["true"])
            pred = np.clip(trees.predict(np.stack([val[n] for n in names], axis=1)), 0.0, 1.0)
            rows.append({"prediction": f"{label}: {name}", "per_bin": per_bin_rmse(pred, val["true"])})
        for r in rows[-3:]:
            print(r["prediction"], round(float(np.mean(r["per_bin"])), 4), flush=True)
    table = [{"prediction": r["prediction"], "val RMSE, bin mean": round(float(np.mean(r["per_bin"])), 4),
              **{f"{k / 10:.1f}": round(v, 3) for k, v in enumerate(r["per_bin"])}} for r in rows]
    mean = {r["prediction"]: float(np.mean(r["per_bin"])) for r in rows}
    gains = [mean[f"{lab}: trees on it and the mode pairing"] - mean[f"{lab}: trees + modified cosine, matched peaks, "
                                                                     "entropy"]
             for lab in ("default model", "ensemble (mean of the members' calibrated predictions)")]
    best = min(mean.values())
    verdict = (f"The similarities lower the bin mean by {gains[0]:.3f} (default model) and {gains[1]:.3f} (ensemble) "
               f"against trees on the cosine alone; the best prediction here is {best:.3f}, "
               + ("within" if best <= 0.17 else "short of") + " the 0.17 target. Not shipped.")
    body = f"""Predicted Tanimoto of clean val spectrum pairs, {val['true'].shape[0]:,} bin-balanced pairs
({PER_BIN['val']:,} per 0.1 Tanimoto bin and mode pairing; the RMSE per bin, then its mean, the issue's
target <= 0.17). The trees are fitted on {fold['true'].shape[0]:,} bin-balanced pairs of the clean calibration
fold of train; val is only measured. On this sample the shipped default map gives the bin mean given first (all
val pairs: 0.193, `model` section).

{markdown_table(table)}

{verdict}"""
    write_results("model-spectral-map", "Tanimoto of spectrum pairs from cosine and spectral similarity "
                  "(issue 18 lever, not shipped)", body, {"rows": table}, HERE / "results-model-spectral-map.json")
    print(body)


if __name__ == "__main__":
    main()
