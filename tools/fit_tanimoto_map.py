"""Fit the calibrated cosine -> Tanimoto map (:mod:`engine.models.tanimoto_map`) of a model on ``train`` only.

Spectra: the ``train`` rows of MassBank in the model's calibration fold (the 8% of train structures,
whole scaffold groups, that model training holds out: :func:`benchmarks.search.common.calibration_fold`),
so their embedding cosines behave as on new compounds; ``val`` is never read. ``--spectra train`` uses
every train row instead (the model saw most of them in training, so their cosines are optimistic). Only
*clean* spectra (the training filters: high-resolution, >= 5 peaks, |ppm| <= 20, not blacklisted) unless
``--all-spectra``: on two scaffold-disjoint halves of the fold, the clean fit matched the all-spectra fit
in bin-mean RMSE and was 0.01 better over all pairs. Only records whose licence allows redistribution
(as for the model itself) unless ``--all-licences``.
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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models.tanimoto_map import TanimotoMap, fit_from_embeddings  # noqa: E402


def load_train(data: Path, *, spectra: str, all_licences: bool = False) -> Any:
    """The train rows (with precursor and ion mode) used for the fit: the calibration fold or all of train,
    only records whose licence allows redistribution unless ``all_licences``."""
    from benchmarks.search.common import calibration_fold
    from engine.models.training.config import DataConfig

    table: Any = pq.read_table(data / "massbank" / "spectra.parquet")
    table = table.filter(pc.equal(table.column("split"), pa.scalar("train")))
    table = table.filter(pc.and_(pc.is_valid(table.column("precursor_mz")), pc.is_valid(table.column("ion_mode"))))
    if spectra == "fold":
        table = table.filter(pa.array(calibration_fold(table)))
    if not all_licences:
        table = table.filter(pc.is_in(table.column("license"), pa.array(list(DataConfig().licenses))))
    return table


def embed_table(model: Any, table: Any) -> dict[str, Any]:
    """Embeddings, structure index per spectrum, structure Tanimoto matrix and positive-mode flags."""
    from benchmarks.model.run import fingerprints
    from engine.models.training.data import massbank_batch, tanimoto_matrix

    emb, _ = model.embed_spectra(massbank_batch(table), batch_size=1024)
    ik14 = np.asarray(table.column("inchikey14").to_pylist(), dtype=str)
    structs, struct = np.unique(ik14, return_inverse=True)
    first = {k: i for i, k in reversed(list(enumerate(ik14.tolist())))}
    smiles = table.column("smiles").to_pylist()
    fps = fingerprints([smiles[first[k]] for k in structs.tolist()])
    return {"emb": emb, "struct": struct.astype(np.int64), "tani": tanimoto_matrix(fps, fps),
            "positive": np.asarray(table.column("ion_mode").to_pylist(), dtype=str) == "positive",
            "structures": int(structs.shape[0])}


def fit(model_path: str | None, data: Path, *, spectra: str = "fold", clean_only: bool = True,
        all_licences: bool = False, per_bin: int = 20_000, n_knots: int = 32, seed: int = 0) -> TanimotoMap:
    """Embed the chosen train spectra, sample bin-balanced pairs and fit the map (see module docs)."""
    from benchmarks.model.run import clean_mask
    from engine.jobs.artifacts import open_model

    model = open_model(model_path)
    table = load_train(data, spectra=spectra, all_licences=all_licences)
    if clean_only:
        table = table.filter(pa.array(clean_mask(table, model)))
    d = embed_table(model, table)
    info = {"fitted_on": ("calibration fold of train (structures held out of model training)" if spectra == "fold"
                          else "all of train"),
            "spectra": int(table.num_rows), "structures": d["structures"], "clean_only": clean_only,
            "licences": "all" if all_licences else "redistributable (CC0, CC BY, CC BY-SA, dl-de/by-2-0)",
            "fingerprint": "RDKit 2048 bits", "weighting": "each 0.1 Tanimoto bin equal within a pairing"}
    return fit_from_embeddings(d["emb"], d["struct"], d["tani"], d["positive"], encoder_hash=model.encoder_hash,
                        per_bin=per_bin, n_knots=n_knots, seed=seed, info=info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=None, help="JSON path (default: engine/data/calibration/tanimoto_map.json)")
    parser.add_argument("--spectra", choices=("fold", "train"), default="fold")
    parser.add_argument("--all-spectra", action="store_true",
                        help="also spectra failing the training filters (default: clean spectra only)")
    parser.add_argument("--all-licences", action="store_true",
                        help="also non-commercial records (default: CC0 / CC BY / CC BY-SA / dl-de/by-2-0 only)")
    parser.add_argument("--per-bin", type=int, default=20_000)
    parser.add_argument("--knots", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    start = time.time()
    tmap = fit(args.model, Path(args.data), spectra=args.spectra, clean_only=not args.all_spectra,
               all_licences=args.all_licences, per_bin=args.per_bin, n_knots=args.knots, seed=args.seed)
    out = tmap.save(args.out)
    print(f"{out}: encoder {tmap.encoder_hash}, {tmap.info['spectra']} spectra of {tmap.info['structures']} "
          f"structures, pairs per bin {tmap.info['pairs_per_bin']} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
