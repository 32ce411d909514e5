"""Simulated MS/MS spectra of candidate molecules, for pretraining the joint model (issue 18 lever).

The engine's own fragmenter (:mod:`engine.queries.fragments`: MetFrag-style cleavage up to two steps,
weighted by the bond propensities learned from train spectra) gives every molecule its fragment ions;
a spectrum keeps a random subset of them drawn by weight, with log-normal intensity noise, hydrogen-shifted
ions now and then and the precursor peak half of the time. Molecules come from ``candidates.parquet``,
none of them a MassBank structure (first InChIKey block), so nothing of train or val is simulated. The
output has the columns of the MassBank file that ``engine train`` reads; the real ``val`` rows are
appended unchanged so that the training run reports the same validation figures (they never train).

    python tools/simulate_spectra.py --molecules 12000 --out runs/simulated/spectra.parquet

Then ``engine train --config configs/simulated-pretrain.toml`` (the model on simulated spectra) and
``engine train --config configs/simulated-finetune.toml`` (the default training from those weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models.rdkit_util import parse_smiles, silence_rdkit
from engine.queries.fragments import (
    HYDROGEN,
    PROTON,
    FragmentSettings,
    fragment_molecule,
    load_bond_propensities,
)

MASSBANK = Path("../shared/data/massbank/spectra.parquet")
CANDIDATES = Path("../shared/data/molecules/candidates.parquet")


def simulate(mol: Any, ion_mode: str, rng: np.random.Generator, settings: FragmentSettings,
             propensities: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], float] | None:
    """(m/z, intensity, precursor m/z) of one simulated spectrum, or None with fewer than 3 fragment ions."""
    frags = fragment_molecule(mol, settings, propensities)
    carrier = PROTON if ion_mode == "positive" else -PROTON
    precursor = float(frags.masses[frags.steps == 0][0]) + carrier   # the intact molecule: no cleavage
    keep = frags.steps > 0
    mz = frags.masses[keep] + carrier
    weight = np.exp(frags.log_weight[keep]) ** 0.5
    shifted = rng.random(mz.shape[0]) < 0.2                # a hydrogen rearrangement now and then
    mz = mz + np.where(shifted, rng.choice([-1.0, 1.0], size=mz.shape[0]) * HYDROGEN, 0.0)
    ok = (mz >= 40.0) & (mz < precursor - 1.5)
    mz, weight = mz[ok], weight[ok]
    if mz.shape[0] < 3:
        return None
    n = int(min(mz.shape[0], rng.integers(5, 41)))
    pick = rng.choice(mz.shape[0], size=n, replace=False, p=weight / weight.sum())
    mz = mz[pick]
    intensity = weight[pick] * rng.lognormal(0.0, 0.7, size=n)
    if rng.random() < 0.5:
        mz = np.append(mz, precursor)
        intensity = np.append(intensity, rng.uniform(0.05, 1.0) * intensity.max())
    order = np.argsort(mz)
    intensity = intensity[order] / intensity.max() * 1000.0
    return np.round(mz[order], 5), intensity.astype(np.float32), round(precursor, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--molecules", type=int, default=12_000)
    ap.add_argument("--negative-share", type=float, default=0.4, help="molecules also simulated in negative mode")
    ap.add_argument("--massbank", type=Path, default=MASSBANK)
    ap.add_argument("--candidates", type=Path, default=CANDIDATES)
    ap.add_argument("--out", type=Path, default=Path("runs/simulated/spectra.parquet"))
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    silence_rdkit()
    from rdkit.Chem.Scaffolds import MurckoScaffold

    real = pq.read_table(args.massbank)
    library = set(real.column("inchikey14").to_pylist())
    cands = pq.read_table(args.candidates, columns=["smiles", "inchikey", "inchikey14", "formula",
                                                    "monoisotopic_mass", "formal_charge"])
    ik14 = np.asarray(cands.column("inchikey14").to_pylist(), dtype=object)
    mass = cands.column("monoisotopic_mass").to_numpy()
    charge = cands.column("formal_charge").to_numpy()
    outside = np.fromiter((k not in library for k in ik14), dtype=bool, count=ik14.shape[0])
    allowed = np.flatnonzero(outside & (mass >= 100) & (mass <= 900) & (charge == 0))
    _, first = np.unique(ik14[allowed], return_index=True)       # one row per 2D structure
    allowed = allowed[np.sort(first)]
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(allowed, size=min(args.molecules, allowed.shape[0]), replace=False))
    picked = cands.take(pa.array(rows)).to_pylist()
    settings = FragmentSettings(max_steps=2)
    propensities = load_bond_propensities()
    out: dict[str, list[Any]] = {name: [] for name in real.schema.names}
    n_spectra = 0
    for cand in tqdm(picked, desc="simulating", mininterval=10):
        mol = parse_smiles(cand["smiles"])
        if mol is None:
            continue
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=mol)
        modes = ["positive"] + (["negative"] if rng.random() < args.negative_share else [])
        for mode in modes:
            spec = simulate(mol, mode, rng, settings, propensities)
            if spec is None:
                continue
            mz, intensity, precursor = spec
            n_spectra += 1
            row = dict.fromkeys(real.schema.names)
            row.update(spectrum_id=f"SIM-{n_spectra:07d}", mz=mz.tolist(), intensity=intensity.tolist(),
                       precursor_mz=precursor, charge=1 if mode == "positive" else -1, ion_mode=mode,
                       adduct="[M+H]+" if mode == "positive" else "[M-H]-", smiles=cand["smiles"],
                       inchikey=cand["inchikey"], formula=cand["formula"], instrument_type="simulated-QTOF",
                       inchikey14=cand["inchikey14"], exact_mass=cand["monoisotopic_mass"],
                       precursor_ppm_error=0.0, ms_level=2, license="CC0", legacy_blacklisted=False,
                       contributor="simulated by the engine's fragmenter", murcko_scaffold=scaffold,
                       record_title=f"simulated; {cand['inchikey14']}; {mode}", split="train")
            for name, value in row.items():
                out[name].append(value)
    simulated = pa.table(out, schema=real.schema)
    val = real.filter(pc.equal(real.column("split"), "val"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables([simulated, val]), args.out)
    print(f"{n_spectra} simulated spectra of {len(picked)} molecules + {val.num_rows} real val spectra -> {args.out}")


if __name__ == "__main__":
    main()
