"""Fit the calibrated cosine -> Tanimoto map (:mod:`engine.tanimoto_map`) of a model on ``train`` only.

Spectra: the ``train`` rows of MassBank in the model's calibration fold (the 8% of train structures,
whole scaffold groups, that model training holds out: :func:`benchmarks.search.common.calibration_fold`),
so their embedding cosines behave as on new compounds; ``val`` is never read. ``--spectra train`` uses
every train row instead (the model saw most of them in training, so their cosines are optimistic). Only
*clean* spectra (the training filters: high-resolution, >= 5 peaks, |ppm| <= 20, not blacklisted) unless
``--all-spectra``: on two scaffold-disjoint halves of the fold, the clean fit matched the all-spectra fit
in bin-mean RMSE and was 0.01 better over all pairs.
Pairs: up to ``--per-bin`` spectrum pairs drawn uniformly (with replacement) from each 0.1-wide Tanimoto
bin (RDKit fingerprint, 2048 bits), separately for positive/positive, negative/negative and cross-mode
pairs, self-pairs excluded; then one bin-balanced isotonic map per pairing. Seeded: the same inputs give
the same JSON.

Usage (reads ``../shared/data``; about a minute on CPU)::

    python tools/fit_tanimoto_map.py [--model CKPT] [--data ../shared/data] [--out JSON]

(default output: ``engine/data/calibration/tanimoto_map.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.tanimoto_map import N_BINS, PAIRINGS, TanimotoMap, bin_of, fit_tanimoto_map  # noqa: E402


def pair_weights(n_pos: npt.NDArray[np.int64], n_neg: npt.NDArray[np.int64], pairing: str
                 ) -> npt.NDArray[np.float64]:
    """Number of distinct spectrum pairs of each structure pair (s <= t) with the given mode pairing."""
    p, q = n_pos.astype(np.float64), n_neg.astype(np.float64)
    if pairing == "cross":
        w = np.outer(p, q) + np.outer(q, p)
        np.fill_diagonal(w, p * q)
    else:
        c = p if pairing == "positive" else q
        w = np.outer(c, c)
        np.fill_diagonal(w, c * (c - 1) / 2)
    return np.triu(w)


def sample_pairs(struct: npt.NDArray[np.int64], positive: npt.NDArray[np.bool_], tani: npt.NDArray[np.float32],
                 per_bin: int, rng: np.random.Generator) -> dict[str, tuple[npt.NDArray[np.int64], ...]]:
    """Per pairing, spectrum index arrays ``(a, b)``: up to ``per_bin`` pairs per Tanimoto bin, uniform over
    the distinct spectrum pairs of that bin and pairing (structure pair drawn by its pair count, then
    spectra uniformly within it)."""
    n_struct = tani.shape[0]
    # spectra sorted by (mode, structure): members of (mode, s) are order[start[mode][s]: + count[mode][s]]
    order = np.lexsort((struct, ~positive))
    count = {m: np.bincount(struct[positive == (m == "positive")], minlength=n_struct)
             for m in ("positive", "negative")}
    start = {"positive": np.concatenate([[0], np.cumsum(count["positive"])[:-1]]),
             "negative": int(count["positive"].sum()) + np.concatenate([[0], np.cumsum(count["negative"])[:-1]])}

    def pick(mode: str, s: npt.NDArray[np.int64], skip: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
        c = count[mode][s] - (0 if skip is None else 1)
        k = np.floor(rng.random(s.shape[0]) * c).astype(np.int64)
        if skip is not None:
            k += k >= skip
        return k

    bins = bin_of(tani)
    out: dict[str, tuple[npt.NDArray[np.int64], ...]] = {}
    for pairing in PAIRINGS:
        w = pair_weights(count["positive"], count["negative"], pairing)
        a_all, b_all = [], []
        for b in range(N_BINS):
            wb = np.where(bins == b, w, 0.0).ravel()
            total = wb.sum()
            if total <= 0:
                continue
            cells = rng.choice(wb.shape[0], size=int(min(per_bin, total)), p=wb / total)
            s, t = np.divmod(cells, n_struct)
            if pairing == "cross":
                # (positive of s, negative of t) or (negative of s, positive of t), by their pair counts
                fwd = count["positive"][s] * count["negative"][t]
                bwd = np.where(s == t, 0, count["negative"][s] * count["positive"][t])
                first_pos = rng.random(s.shape[0]) * (fwd + bwd) < fwd
                mode_a = np.where(first_pos, 0, 1)
                ka = np.where(first_pos, pick("positive", s), pick("negative", s))
                kb = np.where(first_pos, pick("negative", t), pick("positive", t))
                ia = np.where(mode_a == 0, start["positive"][s], start["negative"][s]) + ka
                ib = np.where(mode_a == 0, start["negative"][t], start["positive"][t]) + kb
            else:
                ka = pick(pairing, s)
                kb = np.where(s == t, pick(pairing, t, skip=ka), pick(pairing, t))
                ia, ib = start[pairing][s] + ka, start[pairing][t] + kb
            a_all.append(order[ia])
            b_all.append(order[ib])
        out[pairing] = (np.concatenate(a_all).astype(np.int64), np.concatenate(b_all).astype(np.int64))
    return out


def load_train(data: Path, *, spectra: str) -> Any:
    """The train rows (with precursor and ion mode) used for the fit: the calibration fold or all of train."""
    from benchmarks.search.common import calibration_fold

    table: Any = pq.read_table(data / "massbank" / "spectra.parquet")
    table = table.filter(pc.equal(table.column("split"), pa.scalar("train")))
    table = table.filter(pc.and_(pc.is_valid(table.column("precursor_mz")), pc.is_valid(table.column("ion_mode"))))
    if spectra == "fold":
        table = table.filter(pa.array(calibration_fold(table)))
    return table


def embed_table(model: Any, table: Any) -> dict[str, Any]:
    """Embeddings, structure index per spectrum, structure Tanimoto matrix and positive-mode flags."""
    from benchmarks.model.run import fingerprints
    from engine.training.data import massbank_batch, tanimoto_matrix

    emb, _ = model.embed_spectra(massbank_batch(table), batch_size=1024)
    ik14 = np.asarray(table.column("inchikey14").to_pylist(), dtype=str)
    structs, struct = np.unique(ik14, return_inverse=True)
    first = {k: i for i, k in reversed(list(enumerate(ik14.tolist())))}
    smiles = table.column("smiles").to_pylist()
    fps = fingerprints([smiles[first[k]] for k in structs.tolist()])
    return {"emb": emb, "struct": struct.astype(np.int64), "tani": tanimoto_matrix(fps, fps),
            "positive": np.asarray(table.column("ion_mode").to_pylist(), dtype=str) == "positive",
            "structures": int(structs.shape[0])}


def fit_embedded(emb: npt.NDArray[np.float32], struct: npt.NDArray[np.int64], tani: npt.NDArray[np.float32],
                 positive: npt.NDArray[np.bool_], *, encoder_hash: str, per_bin: int = 20_000, n_knots: int = 32,
                 seed: int = 0, info: dict[str, Any] | None = None) -> TanimotoMap:
    """Sample bin-balanced pairs of the given spectra and fit the map (seeded)."""
    rng = np.random.default_rng(seed)
    pairs = sample_pairs(struct, positive, tani, per_bin, rng)
    cos, tan, code = [], [], []
    for k, name in enumerate(PAIRINGS):
        a, b = pairs[name]
        cos.append(np.einsum("ij,ij->i", emb[a], emb[b]))
        tan.append(tani[struct[a], struct[b]])
        code.append(np.full(a.shape[0], k, np.int8))
    return fit_tanimoto_map(np.concatenate(cos), np.concatenate(tan), np.concatenate(code),
                            encoder_hash=encoder_hash, n_knots=n_knots,
                            info={"per_bin": per_bin, "seed": seed, **(info or {})})


def fit(model_path: str | None, data: Path, *, spectra: str = "fold", clean_only: bool = True,
        per_bin: int = 20_000, n_knots: int = 32, seed: int = 0) -> TanimotoMap:
    """Embed the chosen train spectra, sample bin-balanced pairs and fit the map (see module docs)."""
    from benchmarks.model.run import clean_mask
    from engine.model import load_model

    model = load_model(model_path)
    table = load_train(data, spectra=spectra)
    if clean_only:
        table = table.filter(pa.array(clean_mask(table, model)))
    d = embed_table(model, table)
    info = {"fitted_on": ("calibration fold of train (structures held out of model training)" if spectra == "fold"
                          else "all of train"),
            "spectra": int(table.num_rows), "structures": d["structures"], "clean_only": clean_only,
            "fingerprint": "RDKit 2048 bits", "weighting": "each 0.1 Tanimoto bin equal within a pairing"}
    return fit_embedded(d["emb"], d["struct"], d["tani"], d["positive"], encoder_hash=model.encoder_hash,
                        per_bin=per_bin, n_knots=n_knots, seed=seed, info=info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=None, help="JSON path (default: engine/data/calibration/tanimoto_map.json)")
    parser.add_argument("--spectra", choices=("fold", "train"), default="fold")
    parser.add_argument("--all-spectra", action="store_true",
                        help="also spectra failing the training filters (default: clean spectra only)")
    parser.add_argument("--per-bin", type=int, default=20_000)
    parser.add_argument("--knots", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    start = time.time()
    tmap = fit(args.model, Path(args.data), spectra=args.spectra, clean_only=not args.all_spectra,
                  per_bin=args.per_bin, n_knots=args.knots, seed=args.seed)
    out = tmap.save(args.out)
    print(f"{out}: encoder {tmap.encoder_hash}, {tmap.info['spectra']} spectra of {tmap.info['structures']} "
          f"structures, pairs per bin {tmap.info['pairs_per_bin']} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
