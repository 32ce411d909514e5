"""Ingest benchmark: spectra/s and peak memory of MGF, MSP and mzML ingest into LanceDB,
side by side with matchms (load_from_mgf / load_from_msp / load_from_mzml) and pyteomics' plain readers.

Each method runs in its own subprocess so its peak RSS is measured alone. Usage::

    python benchmarks/ingest/run.py [--copies 3] [--data ../shared/data]

The large MGF / MSP are written from ``massbank/spectra.parquet`` (all 89k spectra, repeated ``--copies``
times with distinct titles). mzML is the set of real runs in ``raw/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._results import markdown_table, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def write_inputs(data: Path, work: Path, copies: int) -> dict[str, Path]:
    """Write the large MGF and MSP from the MassBank Parquet."""
    import numpy as np
    import pyarrow.parquet as pq

    mgf, msp = work / "massbank_large.mgf", work / "massbank_large.msp"
    if mgf.exists() and msp.exists():
        return {"mgf": mgf, "msp": msp}
    table = pq.read_table(data / "massbank" / "spectra.parquet",
                          columns=["spectrum_id", "mz", "intensity", "precursor_mz", "charge", "ion_mode",
                                   "adduct", "smiles", "inchikey", "formula", "name"])
    rows = table.to_pylist()
    with open(mgf, "w") as fm, open(msp, "w") as fs:
        for c in range(copies):
            for r in rows:
                title = f"{r['spectrum_id']}_{c}"
                mz = np.asarray(r["mz"])
                inten = np.asarray(r["intensity"])
                peaks = "\n".join(f"{m:.6f} {i:.6g}" for m, i in zip(mz, inten, strict=True))
                charge = r["charge"] or (1 if r["ion_mode"] == "positive" else -1)
                sign = "+" if charge > 0 else "-"
                fm.write(f"BEGIN IONS\nTITLE={title}\nPEPMASS={r['precursor_mz']}\nCHARGE={abs(charge)}{sign}\n"
                         f"IONMODE={r['ion_mode']}\nADDUCT={r['adduct'] or ''}\nSMILES={r['smiles'] or ''}\n"
                         f"INCHIKEY={r['inchikey'] or ''}\nFORMULA={r['formula'] or ''}\n"
                         f"NAME={(r['name'] or '').strip()}\n{peaks}\nEND IONS\n\n")
                fs.write(f"Name: {title}\nPrecursorMZ: {r['precursor_mz']}\n"
                         f"Precursor_type: {r['adduct'] or ''}\nIon_mode: {r['ion_mode']}\n"
                         f"SMILES: {r['smiles'] or ''}\nInChIKey: {r['inchikey'] or ''}\n"
                         f"Formula: {r['formula'] or ''}\nNum Peaks: {len(mz)}\n{peaks}\n\n")
    return {"mgf": mgf, "msp": msp}


# --- the methods, each run in a child process: argv = [method, fmt, out_dir, *files] -----------------

def _child(method: str, fmt: str, out: str, files: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    n = 0
    if method == "engine":
        from engine.jobs.ingest import ingest

        result = ingest(files, out, on_invalid="skip", progress=False)
        n = result.report.spectra_read
        kept = result.report.kept
        return {"spectra": n, "kept": kept, "seconds": time.perf_counter() - start}
    if method == "matchms":
        from matchms.importing import load_from_mgf, load_from_msp, load_from_mzml

        loader = {"mgf": load_from_mgf, "msp": load_from_msp, "mzml": load_from_mzml}[fmt]
        for f in files:
            for _ in loader(f):
                n += 1
    elif method == "pyteomics":
        from pyteomics import mgf, mzml

        for f in files:
            if fmt == "mgf":
                with mgf.read(f, use_index=False, convert_arrays=1) as reader:
                    for _ in reader:
                        n += 1
            elif fmt == "mzml":
                with mzml.read(f, use_index=False) as reader:
                    for s in reader:
                        n += s.get("ms level") == 2
            else:
                raise ValueError("pyteomics has no MSP reader")
    return {"spectra": n, "seconds": time.perf_counter() - start}


def _poll_peak_rss(proc: subprocess.Popen[str], interval_s: float = 0.02) -> int:
    """Peak resident memory (bytes) of a child process and its descendants, polled until it exits.

    (``ru_maxrss`` cannot be used: Linux carries it over ``execve`` from the forking parent.)
    """
    import psutil

    peak = 0
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            except psutil.Error:
                rss = 0
            peak = max(peak, rss)
            time.sleep(interval_s)
    except psutil.NoSuchProcess:
        pass
    return peak


def run_child(method: str, fmt: str, files: list[Path], work: Path) -> dict[str, float | str]:
    out = tempfile.mkdtemp(dir=work, prefix=f"{method}-{fmt}-")
    code = (f"import json,sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from benchmarks.ingest.run import _child; print(json.dumps(_child(*sys.argv[1:4], sys.argv[4:])))")
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as outf:
        proc = subprocess.Popen([sys.executable, "-c", code, method, fmt, out, *map(str, files)],
                                stdout=outf, stderr=err, text=True)
        peak = _poll_peak_rss(proc)
        proc.wait()
        outf.seek(0)
        err.seek(0)
        stdout, stderr = outf.read(), err.read()
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    result: dict[str, float | str] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    result["spectra_per_s"] = float(result["spectra"]) / float(result["seconds"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--copies", type=int, default=3, help="copies of MassBank in the large MGF/MSP")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(args.data, args.work, args.copies)
    raw = sorted((args.data / "raw").glob("*.mzML"))
    plan = [("mgf", [inputs["mgf"]], ["engine", "matchms", "pyteomics"]),
            ("msp", [inputs["msp"]], ["engine", "matchms"]),
            ("mzml", raw, ["engine", "matchms", "pyteomics"])]
    rows = []
    for fmt, files, methods in plan:
        for method in methods:
            print(f"{fmt} / {method} ...", flush=True)
            r = run_child(method, fmt, files, args.work)
            rows.append({"format": fmt, "method": method, **r})
            print(rows[-1], flush=True)
    by = {(r["format"], r["method"]): r for r in rows}
    for r in rows:
        base = by.get((r["format"], "matchms"), {}).get("spectra_per_s")
        if base and "spectra_per_s" in r:
            r["x_matchms"] = float(r["spectra_per_s"]) / float(base)
    labels = {"engine": "engine ingest (parse + validate + LanceDB write)",
              "matchms": "matchms load_from_* (parse only, default filters)",
              "pyteomics": "pyteomics read (parse only)"}
    table = [{"format": r["format"], "method": labels[str(r["method"])], "spectra": r.get("spectra"),
              "seconds": r.get("seconds"), "spectra/s": r.get("spectra_per_s"),
              "x matchms": r.get("x_matchms"), "peak RSS MB": r.get("peak_rss_mb"),
              "error": r.get("error")} for r in rows]
    mgf_engine = by[("mgf", "engine")].get("spectra_per_s", 0.0)
    mgf_x = by[("mgf", "engine")].get("x_matchms", 0.0)
    body = (f"Large MGF/MSP: MassBank x{args.copies} ({by[('mgf', 'engine')].get('spectra')} spectra); "
            f"mzML: the {len(raw)} real runs in `shared/data/raw` (MS2 spectra only).\n\n"
            + markdown_table(table) +
            f"\n\nTargets: MGF ingest >= 20,000 spectra/s and >= 4x matchms. Measured: "
            f"{float(mgf_engine):,.0f} spectra/s, {float(mgf_x):.1f}x matchms.")
    write_results("ingest", "Ingest (issue 2)", body, {"rows": rows, "copies": args.copies},
                  HERE / "results.json")


if __name__ == "__main__":
    main()
