"""Fit the bond-cleavage propensities of :mod:`engine.queries.fragments` on MassBank ``train`` spectra.

For every kept spectrum, its true structure is cut one step at a time (one bond outside rings, or two
bonds of one ring); a cleavage counts as *observed* when one of its pieces, as an ion with a hydrogen
shift of -1, 0 or +1, lies within the m/z tolerance of a peak below the precursor region. Per bond type
(:func:`engine.queries.fragments.bond_types`) the propensity is ``(observed + 1) / (cleavages + 2)``,
counted over the cleavages that cut a bond of that type; types seen fewer than ``--min-count`` times take
the pooled rate. Each structure counts once per spectrum, at most ``--per-structure`` spectra of it.

Spectra: clean ``train`` records (high-resolution, >= 5 peaks, |ppm| <= 20, not blacklisted) whose licence
allows redistribution, outside the model's calibration fold (which tunes the ranking weights) and never
``val``. Deterministic for a given seed.

Usage (reads ``../shared/data``; a few minutes on CPU)::

    python tools/fit_fragment_bonds.py [--data ../shared/data] [--out engine/data/calibration/fragment_bonds.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.model.run import clean_mask  # noqa: E402
from benchmarks.search.common import calibration_fold  # noqa: E402
from engine.core.peaks import Peaks  # noqa: E402
from engine.jobs.artifacts import open_model  # noqa: E402
from engine.models.encoders.spectrum import preprocess_flat  # noqa: E402
from engine.models.training.config import REDISTRIBUTABLE_LICENSES  # noqa: E402
from engine.queries.fragments import (  # noqa: E402
    DEFAULT_BOND_TABLE,
    HYDROGEN,
    BondPropensities,
    FragmentSettings,
    QueryPeaks,
    atom_table,
    bond_types,
    carries_sodium,
    charge_carriers,
    cleavage_sets,
    near_peak,
    piece_masses,
)


def observed_cleavages(smiles: str, peaks: QueryPeaks, ion_mode: str, adduct: str | None,
                       settings: FragmentSettings) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Bond types of the molecule, the one-step cut masks and whether each cleavage was observed (a piece
    matches one of the spectrum's explainable peaks)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumBonds() == 0:
        return None
    masses, ends, ring_bonds, rings, charged = atom_table(mol)
    cut, _ = cleavage_sets(ends.shape[0], ring_bonds, rings, 1)
    comp = piece_masses(masses, ends, cut)
    observed = np.zeros(cut.shape[0], dtype=bool)
    if peaks.explainable.shape[0] == 0:
        return bond_types(mol), cut, observed
    for shift in (-1, 0, 1):
        for carrier in charge_carriers(ion_mode, carries_sodium(adduct), charged):
            ions = comp + shift * HYDROGEN + carrier
            observed |= (near_peak(peaks.explainable, ions, settings) & (comp > 0)).any(axis=1)
    return bond_types(mol), cut, observed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(DEFAULT_BOND_TABLE))
    parser.add_argument("--per-structure", type=int, default=3)
    parser.add_argument("--min-count", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    settings = FragmentSettings()
    model = open_model()
    table = pq.read_table(Path(args.data) / "massbank" / "spectra.parquet")
    table = table.filter(pc.is_valid(table.column("precursor_mz")))
    train = np.asarray(pc.equal(table.column("split"), "train").to_numpy(zero_copy_only=False), dtype=bool)
    licensed = np.asarray(pc.is_in(table.column("license"), pa.array(list(REDISTRIBUTABLE_LICENSES)))
                          .to_numpy(zero_copy_only=False), dtype=bool)
    keep = train & licensed & ~calibration_fold(table) & clean_mask(table, model)
    table = table.filter(pa.array(keep))
    ik14 = np.asarray(table.column("inchikey14").to_pylist(), dtype=str)
    order = rng.permutation(table.num_rows)
    taken: dict[str, int] = {}
    rows = []
    for i in order.tolist():
        if taken.get(ik14[i], 0) < args.per_structure:
            taken[ik14[i]] = taken.get(ik14[i], 0) + 1
            rows.append(i)
    table = table.take(pa.array(sorted(rows)))
    peaks = preprocess_flat(Peaks.from_arrow(table), model.pipeline)
    starts = peaks.offsets
    smiles = table.column("smiles").to_pylist()
    modes = table.column("ion_mode").to_pylist()
    adducts = table.column("adduct").to_pylist()
    precursor = np.asarray(table.column("precursor_mz").to_numpy(), dtype=np.float64)
    made: dict[str, int] = {}
    seen: dict[str, int] = {}
    for i in range(table.num_rows):
        a, b = starts[i], starts[i + 1]
        query = QueryPeaks.build(peaks.mz[a:b], peaks.intensity[a:b], precursor[i], settings)
        out = observed_cleavages(smiles[i], query, modes[i], adducts[i], settings)
        if out is None:
            continue
        types, cut, observed = out
        for s in range(cut.shape[0]):
            for bond in np.flatnonzero(cut[s]).tolist():
                t = types[bond]
                made[t] = made.get(t, 0) + 1
                seen[t] = seen.get(t, 0) + int(observed[s])
    total_made, total_seen = sum(made.values()), sum(seen.values())
    pooled = float(np.log((total_seen + 1) / (total_made + 2)))
    log_p = {t: float(np.log((seen[t] + 1) / (made[t] + 2))) for t in made if made[t] >= args.min_count}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    table_out = BondPropensities(log_p, pooled, {
        "data": "MassBank train split (release 2025.05.1), clean spectra, redistributable licences, outside "
                "the model's calibration fold",
        "spectra": int(table.num_rows), "structures": len(taken), "cleavages": int(total_made),
        "observed": int(total_seen), "per_structure": args.per_structure, "min_count": args.min_count,
        "tolerance_ppm": settings.tolerance_ppm, "tolerance_da": settings.tolerance_da,
        "counts": {t: [seen[t], made[t]] for t in sorted(made)}, "commit": commit,
        "tool": "tools/fit_fragment_bonds.py"})
    Path(args.out).write_text(json.dumps(table_out.to_dict(), indent=1) + "\n")
    top = sorted(log_p.items(), key=lambda kv: -kv[1])
    print(f"{table.num_rows} spectra of {len(taken)} structures, {total_made} cleavages, pooled p "
          f"{np.exp(pooled):.3f}; {len(log_p)} bond types; {time.time() - t0:.0f} s")
    for t, v in top[:8] + top[-5:]:
        print(f"  {t:14s} p={np.exp(v):.3f} ({seen[t]}/{made[t]})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
