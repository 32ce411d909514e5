"""Parser speed of the readers alone (no validation, no LanceDB): spectra/s on real MassBank spectra.

Writes all MassBank spectra of ``<data>/massbank/spectra.parquet`` (89,284; median 11 peaks, mean 30)
as MGF twice, with all 33 columns as header lines (through :func:`engine.io.writers.write_mgf`) and with
the 9 usual keys (``TITLE``, ``PEPMASS``, ``CHARGE``, ``IONMODE``, ``ADDUCT``, ``SMILES``,
``INCHIKEY``, ``FORMULA``, ``NAME``, as the ingest benchmark writes them), and as one MSP, then times,
best of ``--repeats`` runs:

- ``mgf``: :func:`engine.io.readers.mgf.read_mgf` (the chunked fast path) on the full-header MGF;
- ``mgf 9 keys``: the same on the MGF with the usual keys;
- ``mgf careful``: the same file with one global ``COM=`` line in front, which sends every record
  through the careful line-by-line parser (the speed on files the fast path refuses);
- ``msp``: :func:`engine.io.readers.msp.read_msp`;
- ``mzml``: :func:`engine.io.readers.read_file` over the real runs of ``<data>/raw``;
- ``baseline``: a plain Python line parser (split lines, ``float()`` per value) on the same MGF.

Both wall time and process CPU time are reported: the development machine is shared, so CPU time is
the steadier figure. Usage::

    python benchmarks/ingest/parse_speed.py [--data ../shared/data] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WORK = Path(__file__).resolve().parent / "work"


def write_inputs(data: Path) -> dict[str, Path]:
    """The MassBank MGF / MSP (written once into ``work/``) and the raw runs."""
    import pyarrow.parquet as pq

    from engine.io.readers.parquet import read_parquet
    from engine.io.writers import write_mgf

    WORK.mkdir(exist_ok=True)
    source = data / "massbank" / "spectra.parquet"
    mgf, careful, msp = WORK / "massbank.mgf", WORK / "massbank_globals.mgf", WORK / "massbank.msp"
    lean = WORK / "massbank_9keys.mgf"
    if not mgf.exists():
        write_mgf(read_parquet(source), mgf)  # type: ignore[arg-type]
    if not lean.exists():
        with open(lean, "w") as out:
            for r in pq.read_table(source).to_pylist():
                charge = r["charge"] or (1 if r["ion_mode"] == "positive" else -1)
                out.write(f"BEGIN IONS\nTITLE={r['spectrum_id']}\nPEPMASS={r['precursor_mz']!r}\n"
                          f"CHARGE={abs(charge)}{'+' if charge > 0 else '-'}\nIONMODE={r['ion_mode']}\n"
                          f"ADDUCT={r['adduct'] or ''}\nSMILES={r['smiles']}\nINCHIKEY={r['inchikey']}\n"
                          f"FORMULA={r['formula']}\nNAME={(r['name'] or '').strip()}\n")
                out.write("".join(f"{m!r} {i!r}\n" for m, i in zip(r["mz"], r["intensity"], strict=True)))
                out.write("END IONS\n\n")
    if not careful.exists():
        careful.write_text("COM=global parameter: every record takes the careful path\n" + mgf.read_text())
    if not msp.exists():
        with open(msp, "w") as out:
            for r in pq.read_table(source).to_pylist():
                out.write(f"Name: {r['name']}\nDB#: {r['spectrum_id']}\nPrecursorMZ: {r['precursor_mz']!r}\n"
                          f"Precursor_type: {r['adduct']}\nIon_mode: {r['ion_mode']}\nSMILES: {r['smiles']}\n"
                          f"InChIKey: {r['inchikey']}\nNum Peaks: {len(r['mz'])}\n")
                out.write("".join(f"{m!r} {i!r}\n" for m, i in zip(r["mz"], r["intensity"], strict=True)) + "\n")
    return {"mgf": mgf, "lean": lean, "careful": careful, "msp": msp, "raw": data / "raw"}


def baseline_mgf(path: Path) -> Iterable[tuple[dict[str, str], np.ndarray]]:
    """A plain line parser: the reference point the issue quotes (~30k spectra/s on this machine)."""
    with open(path) as handle:
        meta: dict[str, str] = {}
        peaks: list[float] = []
        for line in handle:
            line = line.strip()
            if not line:
                continue
            if line == "BEGIN IONS":
                meta, peaks = {}, []
            elif line == "END IONS":
                yield meta, np.array(peaks).reshape(-1, 2)
            elif "=" in line:
                key, _, value = line.partition("=")
                meta[key] = value
            else:
                mz, intensity = line.split()[:2]
                peaks += (float(mz), float(intensity))


def timed(run: Callable[[], int], repeats: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        n = run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not best or cpu < best["cpu_s"]:
            best = {"spectra": n, "wall_s": wall, "cpu_s": cpu, "spectra_per_s_wall": n / wall,
                    "spectra_per_s_cpu": n / cpu}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from engine.core.errors import InvalidRecordError
    from engine.io.readers import read_file
    from engine.io.readers.mgf import read_mgf
    from engine.io.readers.msp import read_msp

    inputs = write_inputs(args.data)

    def count(items: Iterable[object]) -> int:
        n = 0
        for item in items:
            if isinstance(item, InvalidRecordError):
                raise item
            n += 1
        return n

    raw = sorted(p for p in inputs["raw"].iterdir() if p.suffix in (".mzML", ".mzXML")) if inputs["raw"].is_dir() \
        else []
    runs: dict[str, Callable[[], int]] = {
        "mgf": lambda: count(read_mgf(inputs["mgf"])),
        "mgf 9 keys": lambda: count(read_mgf(inputs["lean"])),
        "mgf careful": lambda: count(read_mgf(inputs["careful"])),
        "msp": lambda: count(read_msp(inputs["msp"])),
        "baseline line parser": lambda: count(baseline_mgf(inputs["mgf"])),
        "baseline, 9 keys": lambda: count(baseline_mgf(inputs["lean"])),
        "mzml (raw runs)": lambda: sum(count(read_file(p)) for p in raw),
    }
    results = {name: timed(run, args.repeats) for name, run in runs.items()}
    size = inputs["mgf"].stat().st_size / 2**20
    print(f"MGF: {inputs['mgf']} ({size:.0f} MiB)")
    print(f"{'reader':24s} {'spectra':>8s} {'wall s':>7s} {'cpu s':>7s} {'spectra/s wall':>15s} {'spectra/s cpu':>14s}")
    for name, r in results.items():
        print(f"{name:24s} {r['spectra']:8.0f} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} "
              f"{r['spectra_per_s_wall']:15,.0f} {r['spectra_per_s_cpu']:14,.0f}")
    if args.json:
        args.json.write_text(json.dumps({"mgf_mib": size, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
