"""Build the fragment pool decoy spectra are sampled from (``engine/data/decoys/fragment_pool.npz``).

Pool: MassBank ``train`` records whose licence allows redistribution (CC0, CC BY, CC BY-SA,
dl-de/by-2-0), from high-resolution instruments (TOF / FT), with >= 5 peaks; at most ``--per-mode``
spectra per ion mode drawn with a fixed seed; each keeps its 30 most intense fragments below the
precursor (m/z only: no record is shipped whole). See :mod:`engine.core.decoys`.

Usage (reads ``../shared/data``, which the product itself never does)::

    python tools/build_decoy_pool.py [--data ../shared/data] [--per-mode 12000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LICENCES = ("CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0")


def main() -> None:
    from engine.core.decoys import FragmentPool
    from engine.core.records import Spectrum

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--per-mode", type=int, default=12000)
    ap.add_argument("--out", type=Path, default=ROOT / "engine" / "data" / "decoys" / "fragment_pool.npz")
    args = ap.parse_args()
    cols = ["spectrum_id", "mz", "intensity", "precursor_mz", "ion_mode", "license", "instrument_type", "split"]
    rows = [r for r in pq.read_table(args.data / "massbank" / "spectra.parquet", columns=cols).to_pylist()
            if r["split"] == "train" and r["license"] in LICENCES and r["precursor_mz"] is not None
            and any(k in (r["instrument_type"] or "") for k in ("TOF", "FT")) and len(r["mz"]) >= 5]
    rng = np.random.default_rng(0)
    spectra = []
    for mode in ("positive", "negative"):
        mode_rows = [r for r in rows if r["ion_mode"] == mode]
        take = rng.choice(len(mode_rows), size=min(args.per_mode, len(mode_rows)), replace=False)
        spectra += [Spectrum(spectrum_id=mode_rows[i]["spectrum_id"], mz=np.asarray(mode_rows[i]["mz"], np.float64),
                             intensity=np.asarray(mode_rows[i]["intensity"], np.float32),
                             precursor_mz=float(mode_rows[i]["precursor_mz"]), ion_mode=mode)
                    for i in sorted(take)]
    pool = FragmentPool.from_spectra(spectra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pool.save(args.out)
    sizes = {m: (pm.n_spectra, pm.mz.shape[0]) for m, pm in pool.modes.items()}
    print(f"pool {sizes} -> {args.out} ({args.out.stat().st_size / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
