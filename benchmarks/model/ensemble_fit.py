"""Issue 18 lever: the ensemble's ranking weights and Tanimoto map fitted for the ensemble itself.

The ensemble (``engine rank --ensemble``) ranked by ``1.5 x`` the mean of the members' cosines plus the
one-model fragment score (``share x explained share + recall x predicted recall - size x log fragments``,
weights chosen for the default model alone; since this lever at :data:`ENSEMBLE_FRAGMENT_WEIGHTS`), and
predicts Tanimoto as the mean of the members' calibrated predictions. Here, on the clean calibration-fold
spectra of train (held out of every member's training; never val):

* the cosine factor and the three fragment weights are chosen jointly by a grid search on the fold's
  hit@1 (mass256 and formula candidate sets of ``benchmarks/model/run.py``, same seed), and
* one bin-balanced isotonic map is fitted on the ensemble's own cosine (the mean of the members' cosines:
  the cosine of their concatenated embeddings over the number of members), as
  ``tools/fit_tanimoto_map.py`` fits one model's, and
* (measured, not shipped) mass-aware maps: one isotonic map per mode pairing and group of the two spectra's
  neutral-mass difference (:data:`MASS_EDGES`, chosen on the fold), for the default model and the ensemble.

Both are then measured on clean val beside the shipped ensemble, in one run. Usage (reads
``../shared/data``; about 30 minutes on 2 cores with the bundled members; ``--cache DIR`` keeps the
embeddings and fragment terms of each split)::

    python -m benchmarks.model.ensemble_fit [--cache runs/ensemble_fit]
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks._results import markdown_table, write_results
from benchmarks.model.ensemble import member_sets
from benchmarks.model.run import ROOT, clean_mask, fingerprints, fragment_terms, pair_rmse
from engine.core.adducts import default_adduct
from engine.core.errors import InvalidRecordError
from engine.core.paths import ENSEMBLE_MEMBERS
from engine.jobs.artifacts import open_model
from engine.models.tanimoto_map import (
    PAIRINGS,
    TanimotoMap,
    balanced_pairs,
    fit_from_embeddings,
    isotonic_knots,
    load_tanimoto_map,
    mode_pairing,
)
from engine.models.training.candidates import CandidateTable
from engine.models.training.data import tanimoto_matrix
from engine.queries.candidates import CandidateQuery
from engine.queries.fragments import FragmentScorer, FragmentWeights
from engine.queries.rank import ENSEMBLE_COSINE_SCALE, ENSEMBLE_FRAGMENT_WEIGHTS

HERE = Path(__file__).resolve().parent
PROTOCOLS = ("formula", "mass256")
#: fragment terms, each from a scorer with a unit weight on it alone
TERMS = {"share": FragmentWeights(share=1.0, recall=0.0, size=0.0),
         "recall": FragmentWeights(share=0.0, recall=1.0, size=0.0),
         "size": FragmentWeights(share=0.0, recall=0.0, size=-1.0)}   # + log(number of fragment masses)
GRID_COSINE = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5)
GRID_SHARE = (0.5, 0.75, 1.0)
GRID_RECALL = (0.25, 0.5, 0.75, 1.0)
GRID_SIZE = (0.0, 0.025, 0.05, 0.075)
#: neutral-mass-difference groups (upper edges, Da) of the mass-aware maps, chosen on the fold (bin-mean RMSE of the
#: fitted pairs) among {0.003}, {0.01}, {0.01, 20}, {0.01, 5, 50}
MASS_EDGES = (0.01, 5.0, 50.0)


@dataclass
class Split:
    """Per protocol and structure: member cosines ``[member, query, 1 + set]`` (true structure first) and
    fragment terms ``[query, 1 + set]``; the embeddings, structure index and modes for the pair RMSE."""

    cosines: dict[str, list[npt.NDArray[np.float32] | None]]
    terms: dict[str, dict[str, list[npt.NDArray[np.float32] | None]]]
    embeddings: list[npt.NDArray[np.float32]]
    struct_of: npt.NDArray[np.int64]
    tanimoto: npt.NDArray[np.float32]
    positive: npt.NDArray[np.bool_]
    neutral_mass: npt.NDArray[np.float64] | None = None


def spectra(data: Path, split: str, model: Any) -> Any:
    """Clean spectra of ``split``: val, or train's calibration fold (redistributable records)."""
    table: Any = pq.read_table(data / "massbank" / "spectra.parquet")
    if split == "fold":
        from benchmarks.search.common import calibration_fold
        from engine.models.training.config import DataConfig

        table = table.filter(pa.array(calibration_fold(table)))
        table = table.filter(pc.is_in(table.column("license"), pa.array(list(DataConfig().licenses))))
    else:
        table = table.filter(pc.equal(table.column("split"), pa.scalar("val")))
    table = table.filter(pc.is_valid(table.column("precursor_mz")))
    return table.filter(pa.array(clean_mask(table, model)))


def collect(data: Path, split: str, models: list[Any], seed: int) -> Split:
    """Embeddings, cosines and fragment terms of one split (the sets as ``benchmarks/model/ensemble.py``)."""
    table = spectra(data, split, models[0])
    cands = CandidateTable.load(data / "molecules" / "candidates.parquet")
    m = member_sets(table, models, cands, np.random.default_rng(seed), split)
    batch, struct_of, s_smiles, sets, scored, valid = m.batch, m.struct_of, m.smiles, m.sets, m.scored, m.valid
    cosines: dict[str, list[npt.NDArray[np.float32] | None]] = {}
    for name, v in sets.items():
        cosines[name] = []
        for s, set_rows in enumerate(v):
            queries = np.flatnonzero(struct_of == s)
            if not queries.shape[0]:
                cosines[name].append(None)
                continue
            per_member = []
            for emb, index, matrix, true_emb in scored:
                others = matrix[np.array([index[int(r)] for r in set_rows], np.int64)]
                q = emb[queries]
                per_member.append(np.hstack([(q @ true_emb[s])[:, None], q @ others.T]))
            cosines[name].append(np.stack(per_member).astype(np.float32))
    scorer = FragmentScorer()
    keep = np.asarray(sorted(valid), np.int64)
    cand_smiles = dict(zip(keep.tolist(), cands.smiles_of(keep), strict=True))
    scorer.warm([*s_smiles, *cand_smiles.values()], processes=2)
    terms: dict[str, dict[str, list[npt.NDArray[np.float32] | None]]] = {}
    for term, weights in TERMS.items():
        scorer.weights = weights
        for name, v in sets.items():
            got = fragment_terms(scorer, batch, models[0], struct_of, v, cand_smiles, s_smiles)
            terms.setdefault(name, {})[term] = [got[s].astype(np.float32) if s in got else None
                                                for s in range(len(v))]
    print(f"{split}: fragment terms done", flush=True)
    tani = tanimoto_matrix(*(2 * [fingerprints(s_smiles)]))
    positive = np.asarray(table.column("ion_mode").to_pylist()) == "positive"
    return Split(cosines, terms, [s[0] for s in scored], struct_of, tani, positive, neutral(table))


def neutral(table: Any) -> npt.NDArray[np.float64]:
    """Neutral mass of every spectrum (:meth:`CandidateQuery.neutral_mass`: by its adduct, else [M+H]+ / [M-H]- by
    its ion mode), by its ion mode's default adduct where that refuses the record."""
    out = np.full(table.num_rows, np.nan)
    for i, (mz, adduct, mode) in enumerate(zip(table.column("precursor_mz").to_pylist(),
                                               table.column("adduct").to_pylist(),
                                               table.column("ion_mode").to_pylist(), strict=True)):
        try:
            out[i] = CandidateQuery(str(i), mz, mode, adduct).neutral_mass()
        except InvalidRecordError:
            out[i] = default_adduct("negative" if mode == "negative" else "positive").neutral_from_mz(mz)
    return out


def mass_maps(split: Split, emb: npt.NDArray[np.float32], edges: tuple[float, ...]
              ) -> dict[tuple[int, int], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Isotonic cosine -> Tanimoto knots per (pairing code, mass group) on bin-balanced pairs (as
    ``fit_from_embeddings`` draws them); edges () gives the plain per-pairing maps."""
    assert split.neutral_mass is not None
    pairs = balanced_pairs(split.struct_of, split.positive, split.tanimoto, 20_000, np.random.default_rng(0))
    out = {}
    for k, name in enumerate(PAIRINGS):
        a, b = pairs[name]
        cos = np.einsum("ij,ij->i", emb[a], emb[b]).astype(np.float64)
        tan = split.tanimoto[split.struct_of[a], split.struct_of[b]].astype(np.float64)
        group = np.searchsorted(np.asarray(edges), np.abs(split.neutral_mass[a] - split.neutral_mass[b]))
        for g in range(len(edges) + 1):
            sel = group == g
            out[(k, g)] = isotonic_knots(cos[sel], tan[sel], np.ones(int(sel.sum())), 32)
    return out


def mapped_rmse(split: Split, emb: npt.NDArray[np.float32], maps: dict[tuple[int, int], Any],
                edges: tuple[float, ...]) -> dict[str, Any]:
    """Bin-mean RMSE over all distinct spectrum pairs of ``split`` under (mass-aware) maps (``pair_rmse``)."""
    assert split.neutral_mass is not None
    mass = split.neutral_mass

    def predict(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        cos = (emb[rows] @ emb.T).astype(np.float64)
        code = mode_pairing(split.positive[rows][:, None], split.positive[None, :])
        group = np.searchsorted(np.asarray(edges), np.abs(mass[rows][:, None] - mass[None, :]))
        pred = np.zeros_like(cos)
        for (k, g), (xs, ys) in maps.items():
            sel = (code == k) & (group == g)
            pred[sel] = np.interp(cos[sel], xs, ys)
        return pred

    result: dict[str, Any] = pair_rmse(emb, split.struct_of, split.tanimoto, split.positive, predict=predict)["all"]
    return result


def same_mass_share(split: Split) -> float:
    """Among spectrum pairs of one neutral mass (within the first mass edge), the share of one structure."""
    assert split.neutral_mass is not None
    same = np.abs(split.neutral_mass[:, None] - split.neutral_mass[None, :]) <= MASS_EDGES[0]
    one = split.struct_of[:, None] == split.struct_of[None, :]
    upper = np.triu(np.ones_like(same), 1)
    return float((same & one & upper).sum() / max((same & upper).sum(), 1))


def hit1(split: Split, protocol: str, cosine: float, weights: FragmentWeights | None,
         member_weights: npt.NDArray[np.float64] | None = None) -> float:
    """hit@1 (the true structure strictly ahead of every other) of ``cosine x`` the (weighted) mean member
    cosine plus the fragment terms at ``weights`` (none: cosine alone)."""
    hits = total = 0
    for s, cos in enumerate(split.cosines[protocol]):
        if cos is None:
            continue
        w = member_weights if member_weights is not None else np.full(cos.shape[0], 1.0 / cos.shape[0])
        score = cosine * np.tensordot(w, cos.astype(np.float64), axes=1)
        if weights is not None:
            t = split.terms[protocol]
            share, recall, size = (np.nan_to_num(t[k][s]) for k in ("share", "recall", "size"))  # type: ignore[arg-type]
            score = score + weights.share * share + weights.recall * recall - weights.size * size
        hits += int(((score[:, 1:] >= score[:, :1]).sum(1) == 0).sum())
        total += score.shape[0]
    return hits / max(total, 1)


def grid(split: Split) -> list[dict[str, Any]]:
    """Fold hit@1 (mean of the two protocols) of every (cosine factor, share, recall, size) of the grid."""
    out = []
    for c, a, b, d in itertools.product(GRID_COSINE, GRID_SHARE, GRID_RECALL, GRID_SIZE):
        w = FragmentWeights(share=a, recall=b, size=d)
        res = {p: hit1(split, p, c, w) for p in PROTOCOLS}
        out.append({"cosine": c, "share": a, "recall": b, "size": d, **res, "mean": float(np.mean(list(res.values())))})
    return out


def ensemble_embeddings(split: Split) -> npt.NDArray[np.float32]:
    """Concatenated member embeddings over sqrt(members): their dot product is the mean member cosine."""
    return (np.hstack(split.embeddings) / np.sqrt(len(split.embeddings))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="keep each split's embeddings and terms here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.time()
    data = Path(args.data)
    member_files = [ROOT / "engine" / "data" / "model" / "default.pt", *sorted(ENSEMBLE_MEMBERS.glob("*.pt"))]
    models = [open_model(f) for f in member_files]
    splits: dict[str, Split] = {}
    for split in ("fold", "val"):
        file = args.cache / f"{split}.pkl" if args.cache is not None else None
        if file is not None and file.is_file():
            splits[split] = pickle.loads(file.read_bytes())
            if splits[split].neutral_mass is None:   # a cache from before the mass-aware lever
                splits[split].neutral_mass = neutral(spectra(data, split, models[0]))
            continue
        splits[split] = collect(data, split, models, args.seed)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(pickle.dumps(splits[split]))
    fold, val = splits["fold"], splits["val"]

    one = FragmentWeights()   # the scorer's weights, chosen for one model (the ensemble's before this lever)
    table = grid(fold)
    best = max(table, key=lambda r: (r["mean"], r["mass256"]))
    chosen = FragmentWeights(share=best["share"], recall=best["recall"], size=best["size"])
    print("fold best", best, flush=True)
    rows = []
    for label, c, w in (("mean member cosine alone (no fragment evidence)", ENSEMBLE_COSINE_SCALE, None),
                        (f"one model's fragment weights: cosine x {ENSEMBLE_COSINE_SCALE:g}, fragments {one.share:g} / "
                         f"{one.recall:g} / {one.size:g}", ENSEMBLE_COSINE_SCALE, one),
                        (f"fitted on the fold: cosine x {best['cosine']:g}, fragments {chosen.share:g} / "
                         f"{chosen.recall:g} / {chosen.size:g}"
                         + (" (shipped: ENSEMBLE_FRAGMENT_WEIGHTS)" if chosen == ENSEMBLE_FRAGMENT_WEIGHTS
                            and best["cosine"] == ENSEMBLE_COSINE_SCALE else ""), best["cosine"], chosen)):
        rows.append({"ensemble ranking": label,
                     **{f"fold {p} hit@1 %": round(100 * hit1(fold, p, c, w), 2) for p in PROTOCOLS},
                     **{f"val {p} hit@1 %": round(100 * hit1(val, p, c, w), 2) for p in PROTOCOLS}})
        print(rows[-1], flush=True)

    # Tanimoto: the shipped mean of calibrated member predictions vs one map on the ensemble cosine
    maps: list[TanimotoMap | None] = []
    for f, mod in zip(member_files, models, strict=True):
        directory = (ROOT / "engine" / "data" / "calibration" if f.name == "default.pt"
                     else ROOT / "runs" / f.stem)
        maps.append(load_tanimoto_map(mod.encoder_hash, directory=directory))
    ens_fold = ensemble_embeddings(fold)
    ens_map = fit_from_embeddings(ens_fold, fold.struct_of, fold.tanimoto, fold.positive, encoder_hash="ensemble")
    rmse = {}
    if all(m is not None for m in maps):
        rmse["mean of the members' calibrated predictions (shipped)"] = pair_rmse(
            val.embeddings[0], val.struct_of, val.tanimoto, val.positive,
            ensemble=list(zip(val.embeddings, maps, strict=True)))["all"]
    rmse["one map on the ensemble cosine, fitted on the fold"] = pair_rmse(
        ensemble_embeddings(val), val.struct_of, val.tanimoto, val.positive, tanimoto_map=ens_map)["all"]
    # mass-aware maps (not shipped: see the section's note)
    for label, emb_of in (("default model", lambda sp: sp.embeddings[0]), ("ensemble", ensemble_embeddings)):
        for edges in ((), MASS_EDGES):
            maps_ = mass_maps(fold, emb_of(fold), edges)
            kind = "plain per-pairing map" if not edges else f"mass-aware maps (edges {', '.join(map(str, edges))} Da)"
            rmse[f"{label}: {kind}, fitted on the fold"] = mapped_rmse(val, emb_of(val), maps_, edges)
            if edges:
                low = {PAIRINGS[k]: round(float(ys[0]), 2) for (k, g), (xs, ys) in maps_.items() if g == 0}
                print(label, "same-mass maps start at", low, flush=True)
    shares = {"fold": same_mass_share(fold), "val": same_mass_share(val)}
    rmse_rows = [{"ensemble Tanimoto": k, "val RMSE, bin mean": round(v["rmse_bin_mean"], 4),
                  "val RMSE, all pairs": round(v["rmse"], 4),
                  **{f"bin {b / 10:.1f}": round(x, 3) for b, x in enumerate(v["per_bin_rmse"])}}
                 for k, v in rmse.items()]
    print(rmse_rows, flush=True)
    top = sorted(table, key=lambda r: -r["mean"])[:8]
    body = "\n".join([
        f"Members: `default.pt` and the bundled {', '.join(f'`{f.name}`' for f in member_files[1:])}. Clean spectra "
        f"(high-resolution, >= 5 peaks, |ppm| <= 20): fold = train's calibration fold, redistributable records "
        f"({fold.struct_of.shape[0]} spectra); val ({val.struct_of.shape[0]}). Candidate sets of "
        "`benchmarks/model/run.py` (same seed). Score = factor x mean member cosine + share x explained share + "
        "recall x predicted recall - size x log(fragment masses); the grid "
        f"({len(table)} settings) is searched on the fold by the mean of formula and mass256 hit@1; val is "
        "only reported.", "", markdown_table(rows), "",
        "Best settings on the fold:", "", markdown_table(top), "",
        "Calibrated Tanimoto of spectrum pairs (RMSE per 0.1-wide true-Tanimoto bin; target of issue 18: bin mean "
        "<= 0.17):", "", markdown_table(rmse_rows), "",
        f"Mass-aware maps are not shipped: among spectrum pairs of one neutral mass (within {MASS_EDGES[0]} Da), "
        f"{100 * shares['fold']:.0f}% (fold) and {100 * shares['val']:.0f}% (val) are spectra of one structure, "
        "because MassBank records many spectra per compound and few isomers; the fitted same-mass maps therefore "
        "predict a high Tanimoto even at cosine 0. In a repository, where one mass is shared by many isomers, that "
        "would join unrelated spectra in networks and lookups."])
    write_results("model-ensemble-fit", "Ensemble weights and Tanimoto map fitted for the ensemble (issue 18 lever)",
                  body, {"rows": rows, "grid": table, "rmse": rmse, "same_mass_same_structure": shares,
                         "seconds": time.time() - t_start},
                  HERE / "results-model-ensemble-fit.json")
    print(f"done in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
