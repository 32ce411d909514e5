"""Shared helpers for benchmark scripts: machine facts, commit, JSON output, RESULTS.md sections.

Each benchmark owns one section of ``benchmarks/RESULTS.md`` delimited by HTML comments
``<!-- begin NAME -->`` / ``<!-- end NAME -->``; :func:`write_results` replaces only that section.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"


def machine() -> dict[str, Any]:
    """Facts about the machine the benchmark ran on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": None,
    }
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def commit() -> str:
    """Current git commit (with ``-dirty`` when the tree has changes)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header() -> str:
    """One line naming machine, date and commit, for the top of a RESULTS.md section."""
    m = machine()
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ", no GPU"
    return (f"_Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM{gpu}; "
            f"date {_dt.date.today().isoformat()}; commit {commit()}._")


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Render ``rows`` as a GitHub markdown table."""
    if not rows:
        return "_no rows_"
    cols = columns or list(rows[0])

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, body_markdown: str, data: dict[str, Any],
                  json_path: Path) -> None:
    """Write ``data`` (+ machine, commit, date) to ``json_path`` and replace section ``name`` of RESULTS.md."""
    payload = {"benchmark": name, "date": _dt.datetime.now().isoformat(timespec="seconds"),
               "commit": commit(), "machine": machine(), **data}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    section = (f"<!-- begin {name} -->\n## {title}\n\n{header()}\n\n{body_markdown.strip()}\n\n"
               f"Raw figures: `{json_path.relative_to(ROOT)}`.\n<!-- end {name} -->")
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS_MD.write_text(text)
