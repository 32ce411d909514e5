"""Before/after timing of ``engine annotate``: the same input run from several checkouts, back to back.

Each variant is ``NAME=DIR``, a checkout of the engine (e.g. a ``git worktree`` of the commit before a
change) run with the same Python environment (``PYTHONPATH=DIR``). Runs go in the order given, so
alternate them (``before after before after``) on a machine other jobs share. Each run (``nice -n 10``)
records wall time, CPU time (user + system of the job process, less sensitive to other jobs' load than
wall time), the job's stage seconds and the load average, appends to ``compare.json`` and the annotate
section of RESULTS.md shows them (``run.py --render``). Usage::

    python benchmarks/annotate/compare.py INPUT.mgf before=/tmp/wt_old after=/tmp/wt_new ... [--label TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPARE_JSON = HERE / "compare.json"


def run_variant(name: str, checkout: Path, inputs: str, work: Path) -> dict[str, object]:
    inputs = str(Path(inputs).resolve())  # the job runs in the checkout
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    load_start = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "engine", "annotate", inputs, "--out", str(out),
                           "--quiet"],
                          cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row: dict[str, object] = {"variant": name, "checkout": str(checkout), "input": Path(inputs).name,
                              "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                              "load_start": round(load_start, 1), "load_end": round(os.getloadavg()[0], 1)}
    if proc.returncode != 0:
        return {**row, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:300]}
    summary = json.loads((out / "summary.json").read_text())
    return {**row, "spectra": summary["annotated"],
            "stages_s": {k: round(v, 1) for k, v in summary["seconds"].items() if k != "total"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("variants", nargs="+", help="NAME=CHECKOUT_DIR, run in this order")
    ap.add_argument("--label", default="", help="what the comparison is about (shown with the rows)")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = json.loads(COMPARE_JSON.read_text()) if COMPARE_JSON.exists() else {"runs": []}
    for spec in args.variants:
        name, _, checkout = spec.partition("=")
        row = {"label": args.label, **run_variant(name, Path(checkout), args.input, args.work)}
        print(json.dumps(row), flush=True)
        data["runs"].append(row)
        COMPARE_JSON.write_text(json.dumps(data, indent=2) + "\n")
    subprocess.run([sys.executable, str(HERE / "run.py"), "--render"], check=True)


if __name__ == "__main__":
    main()
