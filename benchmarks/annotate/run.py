"""End-to-end benchmark of ``engine annotate``: spectra/s and the share of time per stage.

Runs the job on the real raw files in ``shared/data/raw`` and on a large MGF (MassBank repeated with
distinct titles up to ``--n-spectra``), with 1 process (local runner) and with Ray Data workers.
Usage::

    python benchmarks/annotate/run.py [--n-spectra 1000000] [--workers 0 2] [--library DIR]

The library defaults to the bundled one (``engine/data/library``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.core.fsutil import atomic_path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._results import markdown_table, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent


def write_large_mgf(data: Path, path: Path, n_spectra: int) -> Path:
    """MassBank spectra (all splits, as unannotated queries) repeated with distinct titles."""
    import numpy as np
    import pyarrow.parquet as pq

    if path.exists():
        return path
    table = pq.read_table(data / "massbank" / "spectra.parquet",
                          columns=["spectrum_id", "mz", "intensity", "precursor_mz", "ion_mode", "adduct"])
    rows = table.to_pylist()
    written = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        copy = 0
        while written < n_spectra:
            for r in rows:
                if written >= n_spectra:
                    break
                mz, inten = np.asarray(r["mz"]), np.asarray(r["intensity"])
                peaks = "\n".join(f"{m:.5f} {i:.5g}" for m, i in zip(mz, inten, strict=True))
                fh.write(f"BEGIN IONS\nTITLE={r['spectrum_id']}-{copy}\nPEPMASS={r['precursor_mz']}\n"
                         f"IONMODE={r['ion_mode']}\nADDUCT={r['adduct'] or ''}\n{peaks}\nEND IONS\n")
                written += 1
            copy += 1
    return path


def run_job(inputs: list[str], out: Path, library: str | None, workers: int) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "engine", "annotate", *inputs, "--out", str(out), "--quiet"]
    if library:
        cmd += ["--library", library]
    if workers:
        cmd += ["--workers", str(workers)]
    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t
    load = {"load_start": load_start, "load_end": os.getloadavg()[0]}
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:300], "wall_s": wall, **load}
    summary = json.loads((out / "summary.json").read_text())
    stages = {k: v for k, v in summary["seconds"].items() if k != "total"}
    return {"spectra": summary["annotated"], "wall_s": wall, "job_s": summary["seconds"]["total"],
            "spectra_per_s": summary["annotated"] / wall, "stages_s": stages,
            "low_quality": summary["flagged_low_quality"], "identity_hits": summary["identity_hits"], **load}


def compare_section() -> str:
    """The before/after runs of ``compare.py`` (compare.json), one table per label, when there are any."""
    path = HERE / "compare.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    runs, notes = data["runs"], data.get("notes", {})
    out = []
    for label in dict.fromkeys(str(r.get("label", "")) for r in runs):
        rows = [{"variant": r["variant"], "input": r["input"], "spectra": r.get("spectra"), "wall s": r["wall_s"],
                 "CPU s": r["cpu_s"], "spectra/s (wall)": (float(r["spectra"]) / float(r["wall_s"])
                                                           if r.get("spectra") else None),
                 "stage s": ", ".join(f"{k} {v}" for k, v in (r.get("stages_s") or {}).items()),
                 "load avg start -> end": f"{r['load_start']} -> {r['load_end']}", "error": r.get("error")}
                for r in runs if str(r.get("label", "")) == label]
        out.append(f"\n\n### {label or 'Before / after'}\n\n" + markdown_table(rows)
                   + (f"\n\n{notes[label]}" if label in notes else ""))
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--n-spectra", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                    help="0 = the single-process runner; N > 0 = Ray Data with N embed + N search actors")
    ap.add_argument("--library", default=None)
    ap.add_argument("--only", choices=["raw", "mgf"], default=None,
                    help="rerun one input set; the other's rows are kept from results.json (with their commit)")
    ap.add_argument("--render", action="store_true",
                    help="run nothing: rewrite the RESULTS.md section from results.json")
    args = ap.parse_args()
    if args.render:
        args.only, args.workers = "raw", []
    args.work.mkdir(parents=True, exist_ok=True)
    mgf = args.work / f"massbank_{args.n_spectra}.mgf"
    if not args.render:
        write_large_mgf(args.data, mgf, args.n_spectra)
    raw = ([] if args.render else
           sorted(str(p) for p in (args.data / "raw").iterdir() if p.suffix.lower() in (".mzml", ".mzxml")))
    rows = []
    kept: list[dict[str, object]] = []
    if args.only and (HERE / "results.json").exists():
        old = json.loads((HERE / "results.json").read_text())
        prefix = "MGF" if args.only == "raw" else "raw"
        kept = [{**r, "commit": r.get("commit", old.get("commit"))} for r in old["rows"]
                if str(r["input"]).startswith(prefix) or args.render]
    sets = [("raw files (11 runs)", raw, "raw"), (f"MGF, {args.n_spectra:,} spectra", [str(mgf)], "mgf")]
    for name, inputs, kind in sets:
        if args.only and kind != args.only:
            continue
        for workers in args.workers:
            print(f"{name}, workers={workers} ...", flush=True)
            r = run_job(inputs, args.work / f"out-{workers}", args.library, workers)
            rows.append({"input": name, "workers": workers, **r})
            print(rows[-1], flush=True)
    from benchmarks._results import commit

    rows = [{**r, "commit": commit()} for r in rows] + kept
    rows.sort(key=lambda r: (not str(r["input"]).startswith("raw"), r["workers"]))
    table = []
    for r in rows:
        stages = r.get("stages_s") or {}
        total = sum(stages.values()) or 1.0  # type: ignore[union-attr]
        share = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in stages.items())  # type: ignore[union-attr]
        n = float(r.get("spectra") or 0)  # type: ignore[arg-type]
        rates = ", ".join(f"{k} {n / v:,.0f}" for k, v in stages.items() if v)  # type: ignore[union-attr]
        table.append({"input": r["input"], "runner": "local (1 process)" if not r["workers"] else
                      f"Ray Data, {r['workers']} workers", "spectra": r.get("spectra"),
                      "wall s": r.get("wall_s"), "spectra/s": r.get("spectra_per_s"),
                      "time share by stage": share, "spectra/s per stage (busy time)": rates,
                      "load avg start -> end": (f"{r['load_start']:.1f} -> {r['load_end']:.1f}"
                                                if "load_start" in r else ""),
                      "commit": r.get("commit"), "error": r.get("error")})
    body = (markdown_table(table) + "\n\nStages: start = hashing the inputs and opening the model and library "
            "(imports, library peaks, structure fingerprints); read = parse + validate + batch (in the local runner "
            "it runs in line with the other stages; on Ray it is Ray Data's read tasks and not timed per stage); "
            "embed = model; search = identity + analogue search with exact re-scoring; write = Parquet. Shares "
            "are of the summed stage times; per-stage rates divide the spectra by a stage's busy time (summed "
            "over actors on Ray, so per-process rates, not wall rates). The raw runs hold MS1 scans as well, "
            "which are parsed but not decoded, so their read rate is per MS2 spectrum. Start-up dominates the "
            "small raw-file set; on 2 cores Ray's process start and actor oversubscription cost more than its "
            "parallelism gains (it is there for clusters). "
            "Target: >= 5,000 spectra/s end to end for the 1M MGF on 2 cores.") + compare_section()
    write_results("annotate", "Batch annotation (issue 6)", body, {"rows": rows}, HERE / "results.json")


if __name__ == "__main__":
    main()
