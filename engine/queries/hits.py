"""What identity and analogue search share: the results schema, per-query top-k, and assembling rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.schema import versioned_schema

_FIELDS: list[pa.Field | str] = [
    "query_id", "rank", "score", "library_id", "inchikey", "smiles", "name", "formula", "adduct", "precursor_mz",
    "mass_difference", "quality", "library_quality", pa.field("embedding_cosine", pa.float32()),
    pa.field("spectral_similarity", pa.float32()), "ion_mode", pa.field("q_value", pa.float32()),
]


def search_schema(mode: str = "identity", spectral_metric: str = "entropy") -> pa.Schema:
    """Schema of ``engine search`` results.

    ``score`` is the calibrated score (identity: probability that the hit is the query's structure;
    analogue: predicted Tanimoto between hit and query structure, the reliability). ``quality`` is the
    query embedding's quality, ``mass_difference`` = hit precursor m/z - query precursor m/z, and
    ``spectral_similarity`` the exact similarity named in the schema metadata. ``ion_mode`` is the hit's
    (analogue search across ion modes may differ from the query's). ``q_value`` (identity, rank 1, libraries
    with decoys) is the target-decoy q-value of the match over the whole run (:mod:`engine.queries.fdr`).
    """
    return versioned_schema(_FIELDS, {b"engine.search_mode": mode.encode(),
                                      b"engine.spectral_metric": spectral_metric.encode()})


@dataclass
class Candidates:
    """Scored (query, library row) pairs of one batch, before calibration and top-k."""

    query_index: npt.NDArray[np.int64]
    row_id: npt.NDArray[np.int64]
    features: dict[str, npt.NDArray[np.float64]]


class SearchableLibrary(Protocol):
    """What the queries need from a library: :func:`indexes.search.search` over its vectors."""

    def search(self, queries: npt.NDArray[np.float32], **kwargs: Any) -> pa.Table: ...


def order_in_queries(query_index: npt.NDArray[np.int64], score: npt.NDArray[np.float64],
                     tiebreak: npt.NDArray[np.float64] | None = None
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows ordered by query, then score descending, then ``tiebreak`` descending, then row order (what
    ``np.lexsort((-tiebreak, -score, query_index))`` gives), and each ordered row's 0-based rank in its query.

    Searches return each query's rows together and queries in order; then the rows are sorted as one padded
    (queries x most rows) matrix, row by row, several times faster than one sort of all rows (a search
    re-scores up to 2000 candidates per query; padding sorts after every row, -inf scores included). Other
    layouts, and scores with NaN, take the single sort."""
    n = query_index.shape[0]
    score = np.asarray(score, dtype=np.float64)
    finite_keys = not np.isnan(score).any() and (tiebreak is None or not np.isnan(tiebreak).any())
    if n > 1 and finite_keys and np.all(query_index[1:] >= query_index[:-1]):
        start = np.r_[0, np.flatnonzero(query_index[1:] != query_index[:-1]) + 1]
        counts = np.diff(np.r_[start, n])
        width = int(counts.max())
        if start.shape[0] * width <= 4 * n:  # padding stays small
            group = np.repeat(np.arange(start.shape[0]), counts)
            column = np.arange(n) - np.repeat(start, counts)
            neg = np.full((start.shape[0], width), np.inf)
            neg[group, column] = -score
            if tiebreak is None:
                within = np.argsort(neg, axis=1, kind="stable")
            else:
                tie = np.full((start.shape[0], width), np.inf)
                tie[group, column] = -np.asarray(tiebreak, dtype=np.float64)
                within = np.lexsort((tie, neg), axis=1)
            real = np.arange(width)[None, :] < counts[:, None]   # the first ``count`` sorted cells are the rows
            order = (start[:, None] + within)[real]
            return order, (np.arange(n) - np.repeat(start, counts))
    keys = (-(tiebreak if tiebreak is not None else np.zeros_like(score)), -score, query_index)
    order = np.lexsort(keys)
    q = query_index[order]
    start = np.r_[0, np.flatnonzero(q[1:] != q[:-1]) + 1] if n else np.zeros(0, np.int64)
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    return order.astype(np.int64), rank


def top_per_query(query_index: npt.NDArray[np.int64], score: npt.NDArray[np.float64], k: int,
                  tiebreak: npt.NDArray[np.float64] | None = None
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Positions of the best ``k`` rows of each query (score descending) and their 1-based ranks."""
    if query_index.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    order, rank = order_in_queries(query_index, score, tiebreak)
    keep = rank < k
    return order[keep], (rank[keep] + 1).astype(np.int32)


def as_batch(queries: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """One record batch holding all rows of ``queries``."""
    if isinstance(queries, pa.RecordBatch):
        return queries
    batches = queries.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=queries.schema)


def rank_and_score(query_index: npt.NDArray[np.int64], features: dict[str, npt.NDArray[np.float64]], k: int, *,
                   ranker: Any, scale: Any, fallback_rank: str, fallback_score: npt.NDArray[np.float64],
                   order: npt.NDArray[np.float64] | None = None
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Order each query's candidates and score the best ``k``: positions, 1-based ranks, scores.

    The order is ``order`` when given, else ``ranker.linear(features)`` (``features[fallback_rank]``
    without a ranker). The score
    is ``scale.predict`` of the hit's features plus ``rank_logit`` and ``log_rank`` (``fallback_score``
    without a scale), made non-increasing with rank inside each query.
    """
    logit = ranker.linear(features) if ranker is not None else features[fallback_rank]
    keep, rank = top_per_query(query_index, logit if order is None else order, k, tiebreak=features[fallback_rank])
    if scale is not None:
        sub = {name: values[keep] for name, values in features.items()}
        sub["rank_logit"] = logit[keep]
        sub["log_rank"] = np.log(rank.astype(np.float64))
        score = scale.predict(sub)
    else:
        score = np.asarray(fallback_score, dtype=np.float64)[keep]
    # keep row order = (query, rank); a running minimum per query keeps scores non-increasing with rank
    if score.size:
        group = np.cumsum(np.r_[0, query_index[keep][1:] != query_index[keep][:-1]]).astype(np.float64)
        offset = group * 4.0  # scores are in 0..1: each query's values sit below the previous query's
        score = np.minimum.accumulate(score - offset) + offset
    return keep, rank, score


def query_columns(batch: pa.RecordBatch | pa.Table) -> dict[str, Any]:
    """Query ids, precursor m/z (NaN when missing) and ion modes of a spectrum batch."""
    prec = batch.column("precursor_mz").to_numpy(zero_copy_only=False)
    return {"query_id": np.asarray(batch.column("spectrum_id").to_pylist(), dtype=object),
            "precursor_mz": np.asarray(prec, dtype=np.float64),
            "ion_mode": list(batch.column("ion_mode").to_pylist())}


def assemble(*, query_id: Sequence[str] | npt.NDArray[np.object_], rank: npt.NDArray[np.int32],
             score: npt.NDArray[np.float64], meta: pa.Table, query_precursor: npt.NDArray[np.float64],
             quality: npt.NDArray[np.float32], embedding_cosine: npt.NDArray[np.float64],
             spectral: npt.NDArray[np.float64] | None, schema: pa.Schema) -> pa.Table:
    """Result rows from per-hit arrays and the hits' library annotation (``meta`` from References)."""
    n = rank.shape[0]

    def col(name: str, typ: Any) -> pa.Array | pa.ChunkedArray:
        return meta.column(name).cast(typ) if name in meta.column_names else pa.nulls(n, typ)

    lib_prec = np.asarray(col("precursor_mz", pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    arrays = {
        "query_id": pa.array(list(query_id), pa.string()),
        "rank": pa.array(rank, pa.int32()),
        "score": pa.array(np.asarray(score, dtype=np.float32)),
        "library_id": col("spectrum_id", pa.string()),
        "inchikey": col("inchikey", pa.string()),
        "smiles": col("smiles", pa.string()),
        "name": col("name", pa.string()),
        "formula": col("formula", pa.string()),
        "adduct": col("adduct", pa.string()),
        "precursor_mz": pa.array(lib_prec),
        "mass_difference": pa.array(lib_prec - query_precursor, pa.float64()),
        "quality": pa.array(np.asarray(quality, dtype=np.float32)),
        "library_quality": col("quality", pa.float32()),
        "embedding_cosine": pa.array(np.asarray(embedding_cosine, dtype=np.float32)),
        "spectral_similarity": (pa.array(np.asarray(spectral, dtype=np.float32)) if spectral is not None
                                else pa.nulls(n, pa.float32())),
        "ion_mode": col("ion_mode", pa.string()),
        "q_value": pa.nulls(n, pa.float32()),
    }
    return pa.table(arrays, schema=schema)
