"""How far analogue hits can be trusted: the share of top hits below Tanimoto 0.4 at a minimum reliability.

The analogue reliability estimates the Tanimoto between the hit's and the query's structure. For a user
who keeps hits with reliability >= r, the useful figure is how many of them are structurally far off:
``engine/data/calibration/analogue_trust.json`` holds, per minimum reliability, the share of top analogue
hits whose structure is below Tanimoto 0.4, measured on the calibration fold of ``train`` (structures the
model never saw; written by ``benchmarks/fdr/run.py --write-trust``, which also checks it on val).

A table holds for one model and one analogue search path: the number of embedding neighbours re-scored per
query (``n_candidates``) decides which re-ranker orders the hits (the linear one for the annotate job's 10,
the trees from their ``top`` on) and how good the top hit is, so a table measured with another pool is not
used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.models.calibration import CALIBRATION_DIR

TRUST_FILE = "analogue_trust.json"


def trust_table(encoder_hash: str | None, n_candidates: int | None = None, *, directory: str | Path | None = None
                ) -> tuple[dict[str, Any] | None, str | None]:
    """The stored table for this model and candidate pool, or None and why (absent, made for another model,
    or measured with another ``n_candidates``; None: any pool)."""
    path = Path(directory) if directory is not None else CALIBRATION_DIR
    file = path / TRUST_FILE
    if not file.is_file():
        return None, f"no analogue trust table ({file.name})"
    data: dict[str, Any] = json.loads(file.read_text())
    if data.get("encoder_hash") not in (None, encoder_hash):
        return None, "the analogue trust table was measured for another model"
    pool = data.get("n_candidates")
    if n_candidates is not None and pool != n_candidates:
        measured = f"{pool} analogue candidates" if pool is not None else "an unrecorded candidate pool"
        return None, (f"the analogue trust table was measured with {measured} per query, this search used "
                      f"{n_candidates}")
    return data, None


def share_below(min_reliability: float, trust: dict[str, Any] | None) -> float | None:
    """Estimated share of top analogue hits with reliability >= ``min_reliability`` below the table's
    Tanimoto: the figure of the nearest tabulated level at or below it (the share falls as the level rises,
    so this errs high); None without a table or a level."""
    if trust is None:
        return None
    levels = [lv for lv in trust.get("levels", []) if lv["min_reliability"] <= min_reliability + 1e-9
              and lv.get("share_below") is not None]
    if not levels:
        return None
    return float(max(levels, key=lambda lv: lv["min_reliability"])["share_below"])
