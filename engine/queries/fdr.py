"""Target-decoy competition: q-values for identity matches.

Each query's best target match and best decoy match (each scored among its own kind, exactly as a
library without decoys would score it) compete; the better one wins (a tie goes to the decoy). Over
all queries of a run, sorted by the winner's score, the FDR of accepting every target winner scoring at
least ``s`` is estimated as ``(decoy winners >= s + 1) / (target winners >= s)`` (the "+1" makes the
estimate conservative at small counts; He et al., Barber & Candes), and a target winner's q-value is the
smallest FDR estimate of a threshold that accepts it, so q-values never decrease as the score falls.
Queries whose best match is a decoy get no q-value: they are not accepted at any FDR.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

#: Per query of one identity search batch: the best target and best decoy score (NaN where none).
COMPETITION_SCHEMA = pa.schema([  # type: ignore[arg-type]
    pa.field("query_id", pa.string(), nullable=False),
    pa.field("target_score", pa.float64()),
    pa.field("decoy_score", pa.float64()),
])


def q_values(target_score: npt.ArrayLike, decoy_score: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """q-value per query from its best target and best decoy score (NaN: none); NaN where the decoy wins
    or there is no target."""
    t = np.asarray(target_score, dtype=np.float64)
    d = np.asarray(decoy_score, dtype=np.float64)
    t_ = np.where(np.isfinite(t), t, -np.inf)
    d_ = np.where(np.isfinite(d), d, -np.inf)
    target_wins = np.isfinite(t) & (t_ > d_)
    decoy_wins = np.isfinite(d) & ~target_wins
    out = np.full(t.shape[0], np.nan)
    winner = np.flatnonzero(target_wins | decoy_wins)
    if winner.size == 0:
        return out
    score = np.maximum(t_, d_)[winner]
    is_target = target_wins[winner]
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    n_t = np.cumsum(is_target[order])
    n_d = np.cumsum(~is_target[order])
    # every tied score is accepted together: counts at the last position of its tie group
    last = np.searchsorted(-s_sorted, -s_sorted, side="right") - 1
    fdr = (n_d[last] + 1.0) / np.maximum(n_t[last], 1)
    q = np.minimum(np.minimum.accumulate(fdr[::-1])[::-1], 1.0)
    q_winner = np.empty(winner.size)
    q_winner[order] = q
    out[winner[is_target]] = q_winner[is_target]
    return out


def competition(query_id: npt.NDArray[np.object_] | list[str], target_score: npt.ArrayLike,
                decoy_score: npt.ArrayLike) -> pa.Table:
    """A :data:`COMPETITION_SCHEMA` table."""
    return pa.table({"query_id": pa.array(list(query_id), pa.string()),
                     "target_score": pa.array(np.asarray(target_score, np.float64), from_pandas=True),
                     "decoy_score": pa.array(np.asarray(decoy_score, np.float64), from_pandas=True)},
                    schema=COMPETITION_SCHEMA)


def with_q_values(results: pa.Table, contest: pa.Table) -> pa.Table:
    """``results`` (identity hits) with ``q_value`` set on the rank-1 hit of every query that the target
    won in ``contest`` (all queries of the run), null elsewhere."""
    q = q_values(contest.column("target_score").to_numpy(zero_copy_only=False),
                 contest.column("decoy_score").to_numpy(zero_copy_only=False))
    pos = pc.index_in(results.column("query_id"), value_set=contest.column("query_id").combine_chunks())
    idx = np.asarray(pos.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    rank1 = np.asarray(results.column("rank").to_numpy(zero_copy_only=False)) == 1
    value = np.where((idx >= 0) & rank1, q[np.maximum(idx, 0)] if q.size else np.nan, np.nan)
    col = pa.array(value.astype(np.float32), from_pandas=True)
    i = results.schema.get_field_index("q_value")
    return results.set_column(i, results.schema.field(i), col.cast(results.schema.field(i).type))


def accepted(q: npt.ArrayLike, fdr: float) -> int:
    """How many q-values are at or below ``fdr``."""
    values = np.asarray(q, dtype=np.float64)
    return int((np.nan_to_num(values, nan=np.inf) <= fdr).sum())
