"""Identity-search levers, fitted on the calibration fold of train and measured on val (all and hires clean).

Each lever is a feature set for the identity ranker (a logistic model over all window candidates, as
:mod:`benchmarks.search.calibrate` fits it). Per lever: top-1 accuracy on the calibration fold by
5-fold cross-validation over its queries (the number a lever is chosen by), and on val after fitting on
the whole fold (reported, never used for choosing). Identity sets as in :mod:`benchmarks.search.data`
(val) and :func:`benchmarks.search.calibrate.fit_identity` (fold, redistributable records only).

Usage: ``python benchmarks/search/levers.py [--cache DIR]`` (the cache keeps embeddings and candidate
features between runs).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
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
from benchmarks.search.data import SPECTRA, load_sets
from engine.core.peaks import Peaks, offsets_of
from engine.models.calibration import fit_listwise, fit_logistic, load_calibration
from engine.queries.hits import top_per_query
from engine.queries.identity import IDENTITY_RANKER, IdentitySettings, identity_candidates
from engine.queries.rerank import gap_to_best
from engine.queries.similarity import cosine_greedy, entropy_similarity, prepare_entropy
from engine.queries.structure_evidence import structure_features, structure_index

HERE = Path(__file__).resolve().parent
BASE = ("embedding_cosine", "entropy", "precursor_error", "entropy_gap", "embedding_gap")
SPECTRAL = ("cosine", "log_matches")
QUALITY = ("quality", "library_quality")
STRUCT = ("structure_max_entropy", "structure_mean_entropy", "structure_second_entropy",
          "structure_max_embedding_cosine", "structure_mean_embedding_cosine", "log_structure_spectra")
MARGIN = ("structure_margin_entropy", "structure_margin_embedding_cosine")
#: other exact similarities: entropy at 0.01 Da, unweighted entropy, entropy with the precursor removed
#: (Flash's cleaning, 1.6 Da), greedy cosine at 0.02 Da on raw intensities
#: collision energy of query and candidate: both parsed, equal (within 0.5), |log(1 + CE) difference| (0 unless both)
CE_TERMS = ("ce_known", "ce_same", "ce_log_ratio")
#: why the collision-energy levers are not shipped (written under the lever table)
CE_NOTE = ("The collision-energy rows are not shipped although one clears the clean-val target: the fitted "
           "model raises candidates measured at another energy than the query's, which is how this benchmark "
           "takes its queries (one spectrum of a series out of the library), not mass spectrometry; see the "
           "model card.")
EXTRA = ("entropy_01", "entropy_unweighted", "entropy_no_precursor", "cosine_02")
LEVERS: dict[str, tuple[str, ...]] = {
    "shipped (embedding cosine, entropy, precursor error, gaps)": BASE,
    "+ cosine, matched peaks": BASE + SPECTRAL,
    "+ qualities": BASE + QUALITY,
    "+ structure aggregation": BASE + STRUCT,
    "+ structure aggregation + margins": BASE + STRUCT + MARGIN,
    "+ structure aggregation + margins + cosine, matched peaks, qualities": BASE + STRUCT + MARGIN + SPECTRAL
    + QUALITY,
    "+ entropy at 0.01 Da": (*BASE, "entropy_01"),
    "+ unweighted entropy": (*BASE, "entropy_unweighted"),
    "+ entropy without precursor": (*BASE, "entropy_no_precursor"),
    "+ cosine at 0.02 Da": (*BASE, "cosine_02"),
    "+ all four other similarities": BASE + EXTRA,
    # cross-modal: the query spectrum's embedding against the candidate structure's molecule embedding
    "+ molecule cosine (query spectrum vs candidate structure)": (*BASE, "molecule_cosine"),
    "+ molecule cosine and its gap to the window's best": (*BASE, "molecule_cosine", "molecule_gap"),
    # collision energy: both parsed, equal, |log ratio| (CE_TERMS), and the entropy crossed with the last two
    "+ collision-energy agreement": BASE + CE_TERMS,
    "+ entropy x collision-energy agreement": (*BASE, "entropy_x_ce_same", "entropy_x_ce_log_ratio"),
    "+ collision-energy agreement and entropy x agreement": (*BASE, *CE_TERMS, "entropy_x_ce_same",
                                                             "entropy_x_ce_log_ratio"),
    # a structure's spectra at two energies mixed (weights 0.3 / 0.5 / 0.7) against the query
    "+ same-structure mixtures": (*BASE, "structure_mix_entropy", "mix_gap"),
    "+ same-structure mixtures and their gain": (*BASE, "structure_mix_entropy", "mix_gain", "mix_gap"),
}
#: in-silico fragment evidence of the candidate's structure for the query's peaks (engine.queries.fragments, as
#: candidate ranking adds it): explained share, predicted recall, log fragment masses, and the score's gap to the
#: window's best (isomer-aware tie-breaking: isomers share a mass but not their fragments)
FRAGMENT = ("fragment_share", "fragment_recall", "fragment_log_size")
FRAGMENT_LEVERS: dict[str, tuple[str, ...]] = {
    "+ fragment evidence (share, recall, size)": BASE + FRAGMENT,
    "+ fragment score and its gap to the window's best": (*BASE, "fragment_score", "fragment_gap"),
    "+ fragment evidence + score gap": (*BASE, *FRAGMENT, "fragment_gap"),
    "+ structure aggregation + margins + fragment evidence + score gap": BASE + STRUCT + MARGIN + FRAGMENT
    + ("fragment_gap",),
}


def fragment_evidence(table: pa.Table, queries: npt.NDArray[np.int64], qi: npt.NDArray[np.int64],
                      rows: npt.NDArray[np.int64], model: Any, cache: Path | None, name: str
                      ) -> dict[str, npt.NDArray[np.float64]]:
    """:data:`FRAGMENT` terms, the default-weighted fragment score and its gap to the query's best for every
    (query, library row) pair: the query's peaks against the library row's structure (cached per set)."""
    path = cache / f"fragments_{name}.npz" if cache is not None else None
    if path is not None and path.is_file():
        return dict(np.load(path))
    from engine.queries.fragments import FragmentScorer, FragmentWeights
    from engine.queries.rank import fragment_scores

    used, local = np.unique(queries[qi], return_inverse=True)
    batch = table.take(pa.array(used)).combine_chunks().to_batches()[0]
    smiles = [str(s) for s in np.asarray(table.column("smiles").to_pylist(), dtype=object)[rows]]
    scorer = FragmentScorer()
    scorer.warm(sorted(set(smiles)), processes=2)
    out = {}
    for term, weights in (("fragment_share", FragmentWeights(1.0, 0.0, 0.0)),
                          ("fragment_recall", FragmentWeights(0.0, 1.0, 0.0)),
                          ("fragment_log_size", FragmentWeights(0.0, 0.0, -1.0)),
                          ("fragment_score", FragmentWeights())):
        scorer.weights = weights
        out[term] = np.nan_to_num(fragment_scores(scorer, batch, model, local, smiles)[0]).astype(np.float64)
    out["fragment_gap"] = gap_to_best(qi, out["fragment_score"])
    if path is not None:
        np.savez(path, **out)
    return out


def extra_similarities(peaks: Peaks, queries: npt.NDArray[np.int64], qi: npt.NDArray[np.int64],
                       rows: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.float64]]:
    """:data:`EXTRA` for every (query, library row) pair (``peaks`` of the whole table)."""
    a, b = queries[qi], rows
    used, inverse = np.unique(np.r_[a, b], return_inverse=True)
    sub = peaks.subset(used)
    ia, ib = inverse[:a.shape[0]], inverse[a.shape[0]:]
    out = {}
    for name, prep in (("entropy_01", prepare_entropy(sub, tolerance_da=0.01)),
                       ("entropy_unweighted", prepare_entropy(sub, tolerance_da=0.02, weighted=False)),
                       ("entropy_no_precursor", prepare_entropy(sub, tolerance_da=0.02, precursor_removal_da=1.6))):
        out[name] = np.asarray(entropy_similarity(prep, prep, ia, ib), dtype=np.float64)
    out["cosine_02"] = np.asarray(cosine_greedy(sub, sub, ia, ib, tolerance=0.02)[0], dtype=np.float64)
    return out


def parse_collision_energy(text: str | None) -> float:
    """The number of a collision energy as MassBank writes it ("40", "35 eV", "30 % (nominal)", "Ramp 5-60 V":
    the mid-point of a range); NaN when absent or in kV (source voltages, not collision energies). The unit
    (eV or normalised %) is not kept: the levers compare energies as written."""
    if not text or "kv" in text.lower():
        return float("nan")
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    if not numbers:
        return float("nan")
    if len(numbers) >= 2 and re.search(r"\d\s*%?\s*-\s*\d", text):
        return (numbers[0] + numbers[1]) / 2
    return numbers[0]


def collision_energy_terms(energy: npt.NDArray[np.float64], queries: npt.NDArray[np.int64], c: dict[str, Any]
                           ) -> dict[str, npt.NDArray[np.float64]]:
    """:data:`CE_TERMS` and the entropy crossed with ``ce_same`` and ``ce_log_ratio`` per (query, row) pair."""
    a, b = energy[queries[c["qi"]]], energy[c["rows"]]
    known = np.isfinite(a) & np.isfinite(b)
    same = (known & (np.abs(np.nan_to_num(a) - np.nan_to_num(b)) < 0.5)).astype(np.float64)
    ratio = np.where(known, np.abs(np.log1p(np.nan_to_num(a)) - np.log1p(np.nan_to_num(b))), 0.0)
    return {"ce_known": known.astype(np.float64), "ce_same": same, "ce_log_ratio": ratio,
            "entropy_x_ce_same": c["entropy"] * same, "entropy_x_ce_log_ratio": c["entropy"] * ratio}


def mixture_terms(peaks: Peaks, keys: npt.NDArray[Any], queries: npt.NDArray[np.int64], c: dict[str, Any], *,
                  top: int = 3, weights: tuple[float, ...] = (0.3, 0.5, 0.7)) -> dict[str, npt.NDArray[np.float64]]:
    """Per (query, row): the best entropy similarity of the query to its row's structure, over that structure's
    single spectra in the window and the mixtures ``w a + (1 - w) b`` of every two of its ``top`` best (peaks
    summing to 1 each, then merged as entropy cleaning does): a query at an energy between two library
    energies looks like their mixture. Also the gain over the best single spectrum and the gap to the
    window's best structure."""
    qi, rows, entropy = c["qi"], c["rows"], c["entropy"]
    _, structure = np.unique(keys[rows], return_inverse=True)
    group = np.unique(qi * (int(structure.max()) + 1) + structure, return_inverse=True)[1]
    n_groups = int(group.max()) + 1
    order = np.lexsort((-entropy, group))
    first = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    a_rows, b_rows, mix_w, mix_group = [], [], [], []
    for start, stop in zip(first, np.r_[first[1:], order.shape[0]], strict=True):
        best = rows[order[start:min(stop, start + top)]]
        for x in range(best.shape[0]):
            for y in range(x + 1, best.shape[0]):
                for w in weights:
                    a_rows.append(best[x])
                    b_rows.append(best[y])
                    mix_w.append(w)
                    mix_group.append(group[order[start]])
    single = np.full(n_groups, -1.0)
    np.maximum.at(single, group, entropy)
    mixed = single.copy()
    if a_rows:
        a, b = peaks.subset(np.asarray(a_rows)), peaks.subset(np.asarray(b_rows))
        w = np.asarray(mix_w)

        def share(p: Peaks, scale: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            seg = p.spectrum_of_peak
            total = np.bincount(seg, weights=p.intensity, minlength=len(p))
            return np.asarray(p.intensity / total[seg] * scale[seg], dtype=np.float64)

        seg = np.r_[a.spectrum_of_peak, b.spectrum_of_peak]
        mz, inten = np.r_[a.mz, b.mz], np.r_[share(a, w), share(b, 1 - w)]
        o = np.lexsort((mz, seg))
        mix = Peaks(mz[o], inten[o], offsets_of(np.bincount(seg, minlength=w.shape[0])), a.precursor_mz.copy())
        group_query = np.zeros(n_groups, dtype=np.int64)
        group_query[group] = queries[qi]
        used, local = np.unique(group_query[np.asarray(mix_group)], return_inverse=True)
        sim = entropy_similarity(prepare_entropy(peaks.subset(used)), prepare_entropy(mix), local,
                                 np.arange(w.shape[0]))
        np.maximum.at(mixed, np.asarray(mix_group), sim)
    per_row = mixed[group]
    return {"structure_mix_entropy": per_row, "mix_gain": per_row - single[group],
            "mix_gap": gap_to_best(qi, per_row)}


def candidates(table: pa.Table, queries: npt.NDArray[np.int64], library: npt.NDArray[np.int64],
               emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32], encoder_hash: str,
               work: Path) -> dict[str, Any]:
    """Window candidates of ``queries`` against ``library`` rows with every feature (incl. per structure)."""
    index, refs, _ = build_library(work, table, library, emb, quality, encoder_hash=encoder_hash)
    qi, rows, feats = batched_candidates(identity_candidates, table, queries, emb, quality, index, refs,
                                         IdentitySettings())
    structure = structure_index(refs.meta(rows))
    feats.update(structure_features(qi, structure, feats))
    feats["quality"] = quality[queries[qi]].astype(np.float64)
    feats["library_quality"] = quality[rows].astype(np.float64)
    return {"qi": qi, "rows": rows, "n": len(queries), **feats}


def top1(qi: npt.NDArray[np.int64], score: npt.NDArray[np.float64], label: npt.NDArray[np.float64],
         queries: npt.NDArray[np.int64]) -> float:
    """Share of ``queries`` (positions) whose best-scoring candidate is right (no candidate: wrong)."""
    keep, _ = top_per_query(qi, score, 1)
    right = np.zeros(int(qi.max()) + 1 if qi.size else 0, dtype=bool)
    right[qi[keep]] = label[keep] > 0
    right = np.r_[right, np.zeros(max(0, int(queries.max()) + 1 - right.shape[0]), dtype=bool)]
    return float(right[queries].mean()) if queries.size else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "levers.json")
    parser.add_argument("--members", default="",
                        help="comma-separated ensemble members (checkpoints): adds the lever '+ member cosine', "
                             "the mean of the members' spectrum-spectrum cosines")
    parser.add_argument("--fragments", action="store_true",
                        help="adds the fragment-evidence levers (the in-silico fragmenter's evidence of each "
                             "candidate structure for the query's peaks)")
    parser.add_argument("--fold-all-spectra", action="store_true",
                        help="every fold spectrum of a structure with >= 2 spectra (same ion mode) as a query, in 4 "
                             "groups each searched against train without its group (about 11x the queries); CV "
                             "folds grouped by structure")
    args = parser.parse_args()
    from engine.jobs.artifacts import open_model
    from engine.models.training.config import REDISTRIBUTABLE_LICENSES

    model = open_model()
    sets = load_sets()
    table = sets.spectra
    extra = pq.read_table(SPECTRA, columns=["precursor_mz", "mz", "license", "murcko_scaffold", "collision_energy"])
    extra = extra.filter(pc.and_(pc.is_valid(extra.column("precursor_mz")),
                                 pc.greater(pc.list_value_length(extra.column("mz")), 0)))
    table = table.append_column("license", extra.column("license"))
    table = table.append_column("murcko_scaffold", extra.column("murcko_scaffold"))
    energy = np.asarray([parse_collision_energy(t) for t in extra.column("collision_energy").to_pylist()])
    cache = args.cache
    if cache is not None and (cache / "emb.npz").is_file():
        z = np.load(cache / "emb.npz")
        emb, quality = z["emb"], z["quality"]
    else:
        emb, quality, _ = embed(model, table)
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache / "emb.npz", emb=emb, quality=quality)
    member_embs = [embed(open_model(m), table)[0] for m in args.members.split(",") if m]
    mol, struct = molecule_embeddings(model, table, cache)
    levers = dict(LEVERS)
    if member_embs:
        levers["+ member cosine (ensemble members' spectrum cosines)"] = (*BASE, "member_cosine")
    if args.fragments:
        levers.update(FRAGMENT_LEVERS)
    keys = np.asarray(table.column("inchikey14").to_pylist(), dtype=object)
    modes = np.asarray(table.column("ion_mode").to_pylist(), dtype=object)
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    licensed = np.asarray(pc.is_in(table.column("license"), pa.array(list(REDISTRIBUTABLE_LICENSES)))
                          .to_numpy(zero_copy_only=False), dtype=bool)
    fold = calibration_fold(table) & licensed
    # fold identity set, as calibrate.fit_identity draws it on the redistributable records
    rng = np.random.default_rng(1)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in np.flatnonzero(fold):
        groups.setdefault((keys[i], modes[i]), []).append(int(i))
    fold_q = np.asarray(sorted(int(rng.choice(g)) for g in groups.values() if len(g) >= 2), dtype=np.int64)
    fold_lib = np.setdiff1d(np.flatnonzero((split == "train") & licensed), fold_q)
    peaks = Peaks.from_arrow(table.select(["mz", "intensity", "precursor_mz"]))
    sets_c: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.fold_all_spectra:
            fold_q, sets_c["fold"] = all_spectra_fold(table, groups, licensed, split, emb, quality,
                                                      model.encoder_hash, Path(tmp), cache)
        for name, q, lib in (("fold", fold_q, fold_lib), ("val", sets.identity_queries, sets.identity_library)):
            path = cache / f"cand_{name}.npz" if cache is not None else None
            if name in sets_c:  # the all-spectra fold, made (and cached) above
                pass
            elif path is not None and path.is_file():
                sets_c[name] = dict(np.load(path, allow_pickle=True))
                sets_c[name]["n"] = int(sets_c[name]["n"])
            else:
                sets_c[name] = candidates(table, q, lib, emb, quality, model.encoder_hash, Path(tmp) / name)
                if path is not None:
                    np.savez(path, **sets_c[name])
            c = sets_c[name]
            c["label"] = (keys[c["rows"]] == keys[q[c["qi"]]]).astype(np.float64)
            c["clean"] = sets.hires_clean[q]
            c.update(extra_similarities(peaks, q, c["qi"], c["rows"]))
            c.update(collision_energy_terms(energy, q, c))
            c.update(mixture_terms(peaks, keys, q, c))
            c["molecule_cosine"] = np.einsum("ij,ij->i", emb[q[c["qi"]]], mol[struct[c["rows"]]]).astype(np.float64)
            c["molecule_gap"] = gap_to_best(c["qi"], c["molecule_cosine"])
            if args.fragments:
                c.update(fragment_evidence(table, q, c["qi"], c["rows"], model, cache,
                                           name + ("_all" if args.fold_all_spectra and name == "fold" else "")))
            if member_embs:
                c["member_cosine"] = np.mean([np.einsum("ij,ij->i", m[q[c["qi"]]], m[c["rows"]]) for m in member_embs],
                                             axis=0).astype(np.float64)
            print(name, len(q), "queries,", int(c["clean"].sum()), "hires clean,", len(c["qi"]), "pairs", flush=True)
    fold_c, val_c = sets_c["fold"], sets_c["val"]
    n_fold = fold_c["n"]
    shipped = load_calibration(IDENTITY_RANKER, model.encoder_hash)
    rows: list[dict[str, Any]] = []
    if shipped is not None:
        rows.append({"lever": "stored identity_rank.json", **evaluate_fixed(shipped.linear, fold_c, val_c)})
    for name, score in (("entropy only", "entropy"), ("embedding cosine only", "embedding_cosine")):
        rows.append({"lever": name, **evaluate_fixed(lambda c, s=score: c[s], fold_c, val_c)})
    if args.fold_all_spectra:  # queries of one structure share a part
        uniq, inverse = np.unique(keys[fold_q], return_inverse=True)
        part = (np.random.default_rng(5).permutation(len(uniq)) % 5)[inverse]
    else:
        perm = np.random.default_rng(5).permutation(n_fold)
        part = np.empty(n_fold, dtype=np.int64)
        part[perm] = np.arange(n_fold) % 5
    listwise = {f"{name} [listwise fit]": names for name, names in levers.items()
                if name.startswith(("shipped", "+ structure aggregation", "+ cosine", "+ fragment"))}
    trees = {f"{name} [gradient-boosted trees, 15 leaves x 200]": names for name, names in levers.items()
             if name.startswith(("shipped", "+ cosine, matched peaks", "+ structure aggregation + margins + cosine",
                                 "+ fragment evidence + score gap"))}
    for name, names in {**levers, **listwise, **trees}.items():
        def fit(sel: npt.NDArray[np.bool_], names: tuple[str, ...] = names, name: str = name) -> Any:
            x = {f: fold_c[f][sel] for f in names}
            if name in trees:  # a classifier of the right structure; its log-odds order the window
                return TreeLever(names).fit(x, fold_c["label"][sel])
            if name.endswith("[listwise fit]"):  # softmax over each query's candidates, target = right structure
                return fit_listwise("lever", x, fold_c["qi"][sel], fold_c["label"][sel], feature_names=names,
                                    temperature=0.1)
            return fit_logistic("lever", x, fold_c["label"][sel], feature_names=names)

        cv_score = np.zeros(len(fold_c["qi"]))
        for k in range(5):
            train = part[fold_c["qi"]] != k
            cv_score[~train] = fit(train).linear({f: fold_c[f][~train] for f in names})
        cal = fit(np.ones(len(fold_c["qi"]), dtype=bool))
        all_q = np.arange(n_fold)
        row = {"lever": name, "fold_cv_top1": top1(fold_c["qi"], cv_score, fold_c["label"], all_q),
               "fold_cv_top1_hires_clean": top1(fold_c["qi"], cv_score, fold_c["label"],
                                                all_q[fold_c["clean"]]),
               **val_scores(cal.linear(val_c), val_c),
               "coef": dict(zip(names, cal.coef, strict=True)) if cal.coef else {}}
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "coef"}, flush=True)
    data = {"fold_queries": n_fold, "fold_hires_clean": int(fold_c["clean"].sum()), "val_queries": val_c["n"],
            "val_hires_clean": int(val_c["clean"].sum()), "rows": rows, "fold_all_spectra": args.fold_all_spectra}
    fold_kind = ("every spectrum of a structure with >= 2 spectra, in 4 groups each against train without its "
                 "group; cross-validation folds grouped by structure" if args.fold_all_spectra
                 else "one spectrum per structure and ion mode")
    anatomy = ""
    if shipped is not None:
        data["misses_hires_clean"] = miss_anatomy(val_c, shipped.linear(val_c), sets.spectra, sets.identity_queries)
        anatomy = ("\nWhere the stored ranker misses on high-resolution clean val:\n\n"
                   + markdown_table([data["misses_hires_clean"]]) + "\n")
    body = f"""
Identity ranker levers (issue 18): each a logistic model over all window candidates (10 ppm), fitted on
the calibration fold of train ({n_fold} queries: {fold_kind}; {data['fold_hires_clean']} high-resolution clean;
redistributable records) and chosen by its 5-fold cross-validated top-1 there; val ({val_c['n']} queries,
{data['val_hires_clean']} high-resolution clean) is reported, never chosen on. One fold query is
{1 / n_fold:.4f} of top-1, one val query {1 / val_c['n']:.4f} (hires clean {1 / data['val_hires_clean']:.4f}).

{markdown_table([{k: v for k, v in r.items() if k != 'coef'} for r in rows])}

{CE_NOTE}
{anatomy}"""
    if args.fold_all_spectra:
        write_results("search-levers-all-spectra", "Search levers: identity ranker features, every fold spectrum as a "
                      "query (calibration fold -> val)", body, data, args.out.with_name("levers_all_spectra.json"))
    else:
        write_results("search-levers", "Search levers: identity ranker features (calibration fold -> val)", body,
                      data, args.out)
    print(body)


class TreeLever:
    """Gradient-boosted trees (scikit-learn) as an identity ranker: ``linear`` gives their log-odds."""

    def __init__(self, names: tuple[str, ...]) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.names = names
        self.model = HistGradientBoostingClassifier(max_leaf_nodes=15, max_iter=200, learning_rate=0.05,
                                                    min_samples_leaf=50, random_state=0)
        self.coef: tuple[float, ...] = ()

    def fit(self, x: dict[str, npt.NDArray[np.float64]], label: npt.NDArray[np.float64]) -> TreeLever:
        self.model.fit(np.stack([x[f] for f in self.names], axis=1), label > 0)
        return self

    def linear(self, x: dict[str, Any]) -> npt.NDArray[np.float64]:
        return np.asarray(self.model.decision_function(np.stack([x[f] for f in self.names], axis=1)))


def miss_anatomy(val_c: dict[str, Any], score: npt.NDArray[np.float64], table: pa.Table,
                 queries: npt.NDArray[np.int64]) -> dict[str, int]:
    """Counts over the high-resolution clean val queries: right, right structure outside the window, misses
    whose top hit has the query's formula (an isomer), and queries where a wrong structure's spectrum is
    near-identical (entropy >= 0.98) and at least as close as every right one (no spectral score can
    separate them), with how many of those the ranker still gets right."""
    n, qi = val_c["n"], val_c["qi"]
    keep, _ = top_per_query(qi, score, 1)
    right = np.zeros(n, dtype=bool)
    right[qi[keep]] = val_c["label"][keep] > 0
    in_window = np.zeros(n, dtype=bool)
    np.logical_or.at(in_window, qi, val_c["label"] > 0)
    formula = np.asarray(table.column("formula").to_pylist(), dtype=object)
    top_row = np.full(n, -1)
    top_row[qi[keep]] = val_c["rows"][keep]
    isomer = (top_row >= 0) & (formula[np.maximum(top_row, 0)] == formula[queries])
    best_right, best_wrong = np.zeros(n), np.zeros(n)
    np.maximum.at(best_right, qi, np.where(val_c["label"] > 0, val_c["entropy"], 0.0))
    np.maximum.at(best_wrong, qi, np.where(val_c["label"] > 0, 0.0, val_c["entropy"]))
    twins = (best_wrong >= 0.98) & (best_wrong >= best_right)
    clean = val_c["clean"]
    return {"queries": int(clean.sum()), "right": int((clean & right).sum()),
            "right_structure_not_in_window": int((clean & ~in_window).sum()),
            "misses_in_window": int((clean & in_window & ~right).sum()),
            "of_which_top_hit_is_an_isomer": int((clean & in_window & ~right & isomer).sum()),
            "near_identical_wrong_isomer": int((clean & twins).sum()),
            "of_which_right": int((clean & twins & right).sum())}


def all_spectra_fold(table: pa.Table, groups: dict[tuple[str, str], list[int]], licensed: npt.NDArray[np.bool_],
                     split: npt.NDArray[Any], emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
                     encoder_hash: str, work: Path, cache: Path | None, n_groups: int = 4
                     ) -> tuple[npt.NDArray[np.int64], dict[str, Any]]:
    """Every fold spectrum of a (structure, ion mode) with >= 2 spectra as a query: the spectra of each
    structure go round-robin into ``n_groups`` groups, each searched against train without its own group
    (so a query still finds its structure's spectra of the other groups). Query positions follow the
    returned rows."""
    path = cache / "cand_fold_all.npz" if cache is not None else None
    assign = {i: j % n_groups for g in groups.values() if len(g) >= 2 for j, i in enumerate(g)}
    queries = np.asarray(sorted(assign, key=lambda i: (assign[i], i)), dtype=np.int64)
    if path is not None and path.is_file():
        loaded = dict(np.load(path, allow_pickle=True))
        loaded["n"] = int(loaded["n"])
        return queries, loaded
    parts, offset = [], 0
    for k in range(n_groups):
        q = queries[[assign[int(i)] == k for i in queries]]
        lib = np.setdiff1d(np.flatnonzero((split == "train") & licensed), q)
        c = candidates(table, q, lib, emb, quality, encoder_hash, work / f"group{k}")
        c["qi"] = c["qi"] + offset
        parts.append(c)
        offset += len(q)
    out: dict[str, Any] = {k: np.concatenate([c[k] for c in parts]) for k in parts[0] if k != "n"}
    out["n"] = offset
    if path is not None:
        np.savez(path, **out)
    return queries, out


def val_scores(score: npt.NDArray[np.float64], val_c: dict[str, Any]) -> dict[str, float]:
    q = np.arange(val_c["n"])
    return {"val_top1": top1(val_c["qi"], score, val_c["label"], q),
            "val_top1_hires_clean": top1(val_c["qi"], score, val_c["label"], q[val_c["clean"]])}


def evaluate_fixed(func: Any, fold_c: dict[str, Any], val_c: dict[str, Any]) -> dict[str, float]:
    q = np.arange(fold_c["n"])
    s = func(fold_c)
    return {"fold_cv_top1": top1(fold_c["qi"], s, fold_c["label"], q),
            "fold_cv_top1_hires_clean": top1(fold_c["qi"], s, fold_c["label"], q[fold_c["clean"]]),
            **val_scores(func(val_c), val_c)}


if __name__ == "__main__":
    main()
