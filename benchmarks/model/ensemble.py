"""Issue 18 lever: an ensemble of joint models, measured beside each member in one run (clean val only).

Members are checkpoints with their calibrated cosine -> Tanimoto maps (each fitted on train's calibration
fold by ``tools/fit_tanimoto_map.py``, never on val). The ensemble ranks candidates by the mean of the
members' spectrum-molecule cosines (plus the fragment score, each member alone with the scorer's weights, the
ensemble with :data:`engine.queries.rank.ENSEMBLE_FRAGMENT_WEIGHTS`, as ``engine rank --ensemble`` adds it) and
predicts Tanimoto as the mean of the members' calibrated predictions. Candidate sets,
spectra and fragment scores are those of ``benchmarks/model/run.py`` (same seed, same sets).

Usage (reads ``../shared/data``; about 15 minutes on 2 cores for three members)::

    python -m benchmarks.model.ensemble --member engine/data/model/default.pt:engine/data/calibration \\
        --member runs/pretrain-molecules/model.pt:runs/pretrain-molecules \\
        --member runs/simulated-finetune/model.pt:runs/simulated-finetune
"""

from __future__ import annotations

import argparse
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
from benchmarks.model.run import (
    KS,
    ROOT,
    candidate_sets,
    clean_mask,
    evidence_ranks,
    fingerprints,
    fragment_terms,
    pair_rmse,
    random_hit,
    rank_queries,
    structures,
)
from engine.core.peaks import Peaks
from engine.jobs.artifacts import open_model
from engine.models.tanimoto_map import TanimotoMap, load_tanimoto_map
from engine.models.training.candidates import CandidateTable
from engine.models.training.data import massbank_batch, tanimoto_matrix
from engine.models.training.metrics import hit_rates
from engine.queries.evidence import LibraryEvidence
from engine.queries.fragments import FragmentScorer
from engine.queries.rank import ENSEMBLE_FRAGMENT_WEIGHTS

HERE = Path(__file__).resolve().parent


def member_scores(model: Any, batch: pa.RecordBatch, cands: CandidateTable, rows: npt.NDArray[np.int64],
                  s_smiles: list[str]) -> tuple[npt.NDArray[np.float32], dict[int, int], npt.NDArray[np.float32],
                                                npt.NDArray[np.float32]]:
    """(spectrum embeddings, candidate row -> matrix row, candidate embeddings, true-structure embeddings)."""
    emb, _ = model.embed_spectra(batch, batch_size=1024)
    cand = model.embed_molecules(cands.smiles_of(rows), on_invalid="skip")
    index = {int(r): i for i, r in enumerate(rows[cand.valid])}
    return emb, index, cand.embeddings, model.embed_smiles(s_smiles)


@dataclass
class MemberSets:
    """Query spectra, their structures, candidate sets (rows every member could embed) and each member's scores."""

    batch: pa.RecordBatch
    structs: npt.NDArray[np.str_]
    struct_of: npt.NDArray[np.int64]
    smiles: list[str]
    sets: dict[str, list[npt.NDArray[np.int64]]]
    scored: list[tuple[npt.NDArray[np.float32], dict[int, int], npt.NDArray[np.float32], npt.NDArray[np.float32]]]
    valid: set[int]


def member_sets(table: Any, models: list[Any], cands: CandidateTable, rng: np.random.Generator, split: str
                ) -> MemberSets:
    """The candidate sets of ``benchmarks/model/run.py`` for ``table``'s structures, scored by every member."""
    batch = massbank_batch(table)
    structs, struct_of, s_smiles, s_formula, s_mass = structures(table)
    sets = candidate_sets(cands, structs.tolist(), s_smiles, s_formula, s_mass, rng)
    rows = np.unique(np.concatenate([np.concatenate(v) for v in sets.values()]))
    print(f"{table.num_rows} clean {split} spectra, {rows.shape[0]} candidate molecules", flush=True)
    scored = [member_scores(mod, batch, cands, rows, s_smiles) for mod in models]
    valid = set.intersection(*(set(s[1]) for s in scored))
    sets = {name: [r[np.isin(r, list(valid))] for r in v] for name, v in sets.items()}
    print(f"embedded by {len(models)} models", flush=True)
    return MemberSets(batch, structs, struct_of, s_smiles, sets, scored, valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", action="append", required=True,
                        help="CKPT:MAPDIR (MAPDIR holds tanimoto_map.json fitted for CKPT); give two or more")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", choices=("val", "fold"), default="val",
                        help="val, or train's calibration fold (clean, redistributable records: held out of every "
                             "member's training) for choosing --cosine-scales")
    parser.add_argument("--cosine-scales", default="1.0",
                        help="comma-separated factors on the ensemble's mean cosine before the fragment score is added")
    parser.add_argument("--name", default="ensemble",
                        help="section name: model-NAME (val) or model-NAME-fold; another name keeps the shipped "
                             "ensemble's sections (e.g. ensemble4 for a fourth member)")
    parser.add_argument("--max-structures", type=int, default=0, help="a seeded subset of val structures (a smoke run; "
                        "writes nothing)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.time()
    rng = np.random.default_rng(args.seed)
    data = Path(args.data)
    members = [(m.split(":")[0], m.split(":")[1]) for m in args.member]
    models = [open_model(ckpt) for ckpt, _ in members]
    maps: list[TanimotoMap | None] = [load_tanimoto_map(mod.encoder_hash, directory=d)
                                      for mod, (_, d) in zip(models, members, strict=True)]
    if any(m is None for m in maps):
        raise SystemExit("every member needs a tanimoto_map.json fitted for it (tools/fit_tanimoto_map.py)")

    table: Any = pq.read_table(data / "massbank" / "spectra.parquet")
    if args.split == "fold":
        from benchmarks.search.common import calibration_fold
        from engine.models.training.config import DataConfig

        table = table.filter(pa.array(calibration_fold(table)))
        table = table.filter(pc.is_in(table.column("license"), pa.array(list(DataConfig().licenses))))
    else:
        table = table.filter(pc.equal(table.column("split"), pa.scalar("val")))
    table = table.filter(pc.is_valid(table.column("precursor_mz")))
    clean = clean_mask(table, models[0])
    table = table.filter(pa.array(clean))
    if args.max_structures:
        keys = np.unique(np.asarray(table.column("inchikey14").to_pylist(), dtype=str))
        picked = rng.choice(keys, min(args.max_structures, keys.shape[0]), replace=False)
        table = table.filter(pc.is_in(table.column("inchikey14"), pa.array(picked.tolist())))
    cands = CandidateTable.load(data / "molecules" / "candidates.parquet")
    m = member_sets(table, models, cands, rng, args.split)
    batch, structs, struct_of, s_smiles, sets, scored, valid = (m.batch, m.structs, m.struct_of, m.smiles, m.sets,
                                                                m.scored, m.valid)

    scorer = FragmentScorer()
    keep = np.asarray(sorted(valid), np.int64)
    cand_smiles = dict(zip(keep.tolist(), cands.smiles_of(keep), strict=True))
    scorer.warm([*s_smiles, *cand_smiles.values()], processes=2)
    frag = {name: fragment_terms(scorer, batch, models[0], struct_of, v, cand_smiles, s_smiles)
            for name, v in sets.items()}
    scorer.weights = ENSEMBLE_FRAGMENT_WEIGHTS   # the ensemble's own weights (engine rank --ensemble)
    frag_ens = {name: fragment_terms(scorer, batch, models[0], struct_of, v, cand_smiles, s_smiles)
                for name, v in sets.items()}
    print("fragment scores done", flush=True)

    labels = [Path(ckpt).parent.name if Path(ckpt).name == "model.pt" else Path(ckpt).stem for ckpt, _ in members]
    ranking: dict[str, Any] = {}
    scales = [float(x) for x in args.cosine_scales.split(",")]
    for name, v in sets.items():
        for extra_name, extra, extra_ens in (("", None, None), (" + fragments", frag[name], frag_ens[name])):
            for label, (emb, index, matrix, true_emb) in zip(labels, scored, strict=True):
                ranks, sizes = rank_queries(emb, struct_of, v, index, matrix, true_emb, extra=extra)
                ranking[f"{label}: {name}{extra_name}"] = {**hit_rates(ranks, KS), "queries": int(ranks.shape[0]),
                                                           "random_hit_rate@1": random_hit(sizes, 1)}
            for scale in (scales if extra is not None else [1.0]):
                ranks = ensemble_ranks(scored, struct_of, v, extra_ens, scale=scale)
                key = "ensemble" if scale == 1.0 else f"ensemble, cosine x {scale:g}"
                ranking[f"{key}: {name}{extra_name}"] = {**hit_rates(ranks, KS), "queries": int(ranks.shape[0]),
                                                         "random_hit_rate@1": random_hit(sizes, 1)}
            print(name + extra_name, {k: round(r["hit_rate@1"], 4) for k, r in ranking.items()
                                      if k.endswith(f"{name}{extra_name}")}, flush=True)

    # library evidence (engine rank --library, on by default in engine annotate): the library is train (+ all
    # val for the val split), embedded by the first model; the true structure's own spectra are hidden
    library: Any = pq.read_table(data / "massbank" / "spectra.parquet")
    library = library.filter(pc.is_in(library.column("split"),
                                      pa.array(["train", "val"] if args.split == "val" else ["train"])))
    library = library.filter(pc.is_valid(library.column("precursor_mz")))
    lib_emb, _ = models[0].embed_spectra(massbank_batch(library), batch_size=1024)
    peak_columns = ["mz", "intensity", "precursor_mz"]
    evidence = LibraryEvidence.from_arrays(
        library.column("inchikey14").to_pylist(), library.column("ion_mode").to_pylist(), lib_emb,
        encoder_hash=models[0].encoder_hash, peaks=Peaks.from_arrow(library.select(peak_columns)))
    q_peaks = evidence.query_peaks(Peaks.from_arrow(table))
    modes = table.column("ion_mode").to_pylist()
    emb0, index0, matrix0, true0 = scored[0]
    for name, v in sets.items():
        label = f"{name} + fragments + library evidence"
        for key, base in [(labels[0], None), *((
                "ensemble" if scale == 1.0 else f"ensemble, cosine x {scale:g}",
                (lambda s_, q_, v_=v, sc=scale: ensemble_scores(scored, s_, q_, v_[s_], sc))) for scale in scales)]:
            ranks = evidence_ranks(emb0, struct_of, modes, v, index0, matrix0, true0, cands.inchikey14, structs,
                                   evidence, False, extra=frag[name] if base is None else frag_ens[name],
                                   spec_peaks=q_peaks, base=base)
            ranking[f"{key}: {label}"] = {**hit_rates(ranks, KS), "queries": int(ranks.shape[0])}
        print(label, {k: round(r["hit_rate@1"], 4) for k, r in ranking.items() if k.endswith(label)}, flush=True)

    tani = tanimoto_matrix(*(2 * [fingerprints(s_smiles)]))
    positive = np.asarray(table.column("ion_mode").to_pylist()) == "positive"
    rmse = {label: pair_rmse(s[0], struct_of, tani, positive, tanimoto_map=tmap)["all"]
            for label, s, tmap in zip(labels, scored, maps, strict=True)}
    rmse["ensemble"] = pair_rmse(scored[0][0], struct_of, tani, positive,
                                 ensemble=[(s[0], tmap) for s, tmap in zip(scored, maps, strict=True)])["all"]
    print({k: round(v["rmse_bin_mean"], 4) for k, v in rmse.items()}, flush=True)

    evidence_md = [{"model": key.split(": ")[0], **{f"{p} + fragments + library evidence hit@{k} %":
                                                     round(100 * ranking[f"{key.split(': ')[0]}: {p} + fragments + "
                                                                         f"library evidence"][f"hit_rate@{k}"], 2)
                                                     for p in ("formula", "mass256") for k in (1, 20)}}
                   for key in ranking if key.endswith("mass256 + fragments + library evidence")]
    rows_md = []
    one = FragmentScorer().weights
    for label in [*labels, "ensemble"]:
        row: dict[str, Any] = {"model": label}
        for protocol in ("formula", "formula + fragments", "mass256", "mass256 + fragments"):
            for k in (1, 20):
                row[f"{protocol} hit@{k} %"] = round(100 * ranking[f"{label}: {protocol}"][f"hit_rate@{k}"], 2)
        row["calibrated RMSE, bin mean"] = round(rmse[label]["rmse_bin_mean"], 4)
        row["calibrated RMSE, all pairs"] = round(rmse[label]["rmse"], 4)
        rows_md.append(row)
    for scale in scales:
        if scale != 1.0:
            key = f"ensemble, cosine x {scale:g}"
            rows_md.append({"model": key, **{f"{protocol} hit@{k} %":
                                             round(100 * ranking[f"{key}: {protocol}"][f"hit_rate@{k}"], 2)
                                             for protocol in ("formula + fragments", "mass256 + fragments")
                                             for k in (1, 20)}})
    timing = (product_timing(batch, 300, data / "molecules" / "candidates.parquet")
              if args.split == "val" and not args.max_structures and args.name == "ensemble" else [])
    body = "\n".join([
        f"Members: {', '.join(f'`{c}` (map `{d}/tanimoto_map.json`)' for c, d in members)}. "
        f"Clean {'val' if args.split == 'val' else 'calibration-fold (train, redistributable)'} spectra "
        f"({table.num_rows}; high-resolution, >= 5 peaks, |ppm| <= 20), the candidate sets of "
        "`benchmarks/model/run.py` (same seed). The ensemble ranks by the mean of the members' spectrum-molecule "
        "cosines (+ the fragment score in the `+ fragments` columns: a member alone with the scorer's weights "
        f"{one.share:g} / {one.recall:g} / {one.size:g}, "
        f"the ensemble with its own {ENSEMBLE_FRAGMENT_WEIGHTS.share:g} / {ENSEMBLE_FRAGMENT_WEIGHTS.recall:g} / "
        f"{ENSEMBLE_FRAGMENT_WEIGHTS.size:g}, share / recall / size) and predicts Tanimoto as the mean of the "
        "members' calibrated predictions (maps fitted on train's calibration fold). Hit rates in %; random "
        f"hit@1: formula {100 * ranking['ensemble: formula']['random_hit_rate@1']:.1f}%, mass256 "
        f"{100 * ranking['ensemble: mass256']['random_hit_rate@1']:.2f}%.",
        "", markdown_table(rows_md), "",
        "With library evidence as well (`engine rank --library`, on by default in `engine annotate`; library: "
        f"{'train and all val' if args.split == 'val' else 'train'} spectra embedded by the first model, the "
        "true structure's own spectra hidden, as for an unknown):", "", markdown_table(evidence_md), "",
        "Targets of issue 18: mass256 + fragments hit@1 >= 58%, calibrated RMSE (bin mean) <= 0.17.",
        *(["", "Cost through the product (`engine.queries.rank.rank_candidates` as `engine rank` calls it; bundled "
               "model and members, 300 clean val spectra, `candidates.parquet` molecules by neutral mass at 10 ppm; "
               "the candidates' "
               "fragments computed beforehand, 1 torch thread per process as set by --threads):", "",
           markdown_table(timing)] if timing else [])])
    if args.max_structures:
        print(body)
        return
    suffix = "" if args.split == "val" else "-fold"
    title = ("Ensemble of joint models (issue 18 lever; opt-in for candidate ranking)" if args.name == "ensemble"
             else f"Ensemble of joint models, {args.name} (issue 18 lever)")
    write_results(f"model-{args.name}{suffix}", title + ("" if args.split == "val" else ", calibration fold"), body,
                  {"members": members, "split": args.split, "ranking": ranking, "rmse": rmse, "timing": timing,
                   "seconds": time.time() - t_start}, HERE / f"results-model-{args.name}{suffix}.json")
    print(f"done in {time.time() - t_start:.0f} s")


def product_timing(batch: pa.RecordBatch, n: int, molecules: Path) -> list[dict[str, Any]]:
    """Seconds of ``engine rank``'s library path (:func:`engine.queries.rank.rank_candidates`, bundled model,
    candidates of ``molecules`` by mass at 10 ppm, fragment evidence on and off) for the first ``n`` spectra
    of ``batch``, alone and with the bundled ensemble members."""
    from engine.jobs.artifacts import open_members
    from engine.queries.candidate_sources import candidate_source
    from engine.queries.rank import RankReport, rank_candidates

    model = open_model(None)
    members = open_members((), bundled=True, model=model)
    queries = batch.slice(0, n)
    cands = candidate_source(candidates_path=str(molecules), by="mass", tolerance_ppm=10.0).for_batch(queries)
    rows = []
    for fragments in (False, True):
        for label, used in (("default model", []), ("default + bundled members (--ensemble)", members)):
            scorer = FragmentScorer() if fragments else None
            if scorer is not None:   # fragments of the candidates computed beforehand: the same for both rows
                scorer.warm(list(set(cands.column("smiles").to_pylist())), processes=2)
            report = RankReport()
            t0 = time.perf_counter()
            rank_candidates(queries, cands, model, top_k=20, report=report, fragments=scorer, members=used)
            seconds = time.perf_counter() - t0
            rows.append({"ranking": label, "fragment evidence": "on" if fragments else "off",
                         "spectra": queries.num_rows, "candidates scored": report.candidates,
                         "seconds": round(seconds, 2), "spectra/s": round(queries.num_rows / seconds, 1)})
            print(rows[-1], flush=True)
    return rows


def ensemble_scores(scored: list[tuple[npt.NDArray[np.float32], dict[int, int], npt.NDArray[np.float32],
                                       npt.NDArray[np.float32]]],
                    s: int, queries: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], scale: float
                    ) -> npt.NDArray[np.float64]:
    """``scale`` x the mean of the members' cosines of ``queries`` with [true structure ``s``, *``rows``]."""
    score = np.zeros((queries.shape[0], rows.shape[0] + 1))
    for emb, index, matrix, true_emb in scored:
        others = matrix[np.array([index[int(r)] for r in rows], np.int64)]
        q = emb[queries]
        score += np.hstack([(q @ true_emb[s])[:, None], q @ others.T])
    return score * (scale / len(scored))


def ensemble_ranks(scored: list[tuple[npt.NDArray[np.float32], dict[int, int], npt.NDArray[np.float32],
                                      npt.NDArray[np.float32]]],
                   struct_of: npt.NDArray[np.int64], sets: list[npt.NDArray[np.int64]],
                   extra: dict[int, npt.NDArray[np.float64]] | None, *, scale: float = 1.0) -> npt.NDArray[np.int64]:
    """Rank of the true structure when the score is ``scale`` x the mean of the members' cosines (+ ``extra``)."""
    ranks = np.empty(struct_of.shape[0], np.int64)
    for s, rows in enumerate(sets):
        queries = np.flatnonzero(struct_of == s)
        if not queries.shape[0]:
            continue
        score = ensemble_scores(scored, s, queries, rows, scale)
        if extra is not None:
            score += extra[s]
        ranks[queries] = 1 + (score[:, 1:] >= score[:, :1]).sum(1)
    return ranks


if __name__ == "__main__":
    main()
