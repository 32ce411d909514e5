"""The annotate job's q-value pass (target-decoy q-values over every spectrum of the job) and analogue trust.

Each chunk's results carry the query's best target score (``identity_score``) and the best decoy score
it competed with (``identity_decoy_score``); q-values need all of them at once, so once the chunks are
written this pass computes them over the job's files (:func:`engine.queries.fdr.q_values`) and rewrites
each part with ``identity_q_value``. Rerunning it gives the same values (it only reads the scores).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.fsutil import atomic_write
from engine.io.writers.parquet import table_bytes
from engine.queries.fdr import q_values
from engine.queries.trust import share_below, trust_table

log = logging.getLogger(__name__)

#: The FDR levels the job summary counts identity matches at.
SUMMARY_LEVELS = (0.01, 0.05)


def job_parts(results: Path, keys: set[str]) -> list[Path]:
    """The result parts of the job's files (``results/file=<key>/part-*.parquet``)."""
    return [p for p in sorted(results.glob("file=*/part-*.parquet")) if p.parent.name.removeprefix("file=") in keys]


def assign_q_values(parts: Sequence[Path]) -> int:
    """Set ``identity_q_value`` in every part from the competition over all of them; returns how many
    matches got one. Only the score columns are read for the competition, and only parts whose q-values
    change are rewritten. Parts without the competition columns (another engine version) are left alone."""
    columns = ["identity_score", "identity_decoy_score", "identity_q_value"]
    scores: list[tuple[Path, pa.Table]] = []
    for p in parts:
        if set(columns) <= set(pq.read_schema(p).names):
            scores.append((p, pq.read_table(p, columns=columns)))
    if not scores:
        return 0

    def values(name: str) -> npt.NDArray[np.float64]:
        return np.concatenate([t.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for _, t in scores])

    q = q_values(values("identity_score"), values("identity_decoy_score")).astype(np.float32)
    start = 0
    for path, small in scores:
        n = small.num_rows
        new = q[start:start + n]
        start += n
        old = small.column("identity_q_value").to_numpy(zero_copy_only=False).astype(np.float32)
        if np.array_equal(old, new, equal_nan=True):
            continue
        table = pq.read_table(path)
        i = table.schema.get_field_index("identity_q_value")
        atomic_write(path, table_bytes(table.set_column(i, table.schema.field(i), pa.array(new, from_pandas=True))))
    assigned = int(np.isfinite(q).sum())
    log.info("q-values for %d identity matches of %d spectra", assigned, q.shape[0])
    return assigned


def count_at(q: npt.ArrayLike, levels: Sequence[float] = SUMMARY_LEVELS) -> dict[str, int]:
    """Identity matches at or below each FDR level, keyed ``"1%"``, ``"5%"``."""
    values = np.nan_to_num(np.asarray(q, dtype=np.float64), nan=np.inf)
    return {f"{round(level * 100):d}%": int((values <= level).sum()) for level in levels}


def analogue_trust(parts: Sequence[Path], min_reliability: float, encoder_hash: str | None,
                   n_candidates: int | None = None) -> dict[str, Any]:
    """Analogue hits of the job with reliability >= ``min_reliability`` and the share of them estimated below
    Tanimoto 0.4 (:mod:`engine.queries.trust`: None, with a ``note`` saying why, without a table for this
    model and this ``n_candidates``, the embedding neighbours the job re-scored per spectrum)."""
    hits = 0
    for p in parts:
        if "analogue_score" in pq.read_schema(p).names:
            score = pq.read_table(p, columns=["analogue_score"]).column(0).to_numpy(zero_copy_only=False)
            hits += int((np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-1.0) >= min_reliability).sum())
    table, why = trust_table(encoder_hash, n_candidates)
    return {"min_reliability": min_reliability, "hits": hits,
            "estimated_share_below_0.4": share_below(min_reliability, table), "note": why}
