"""Evidence per structure: a query's candidate library spectra pooled by compound (InChIKey first block).

A compound is often recorded several times (collision energies, instruments, adducts); a query's best
single spectrum can belong to an isomer recorded at the query's collision energy while the right
compound's spectra agree with the query more consistently. :func:`structure_features` gives every
(query, library spectrum) row summaries over all candidate spectra of the same (query, structure):
the maximum, the mean and the second-best of a per-spectrum feature, the number of spectra, and the
structure's margin to the query's best other structure. Rows without an InChIKey are their own structure.
The default identity ranker does not read these: on the calibration fold they did not raise top-1
(benchmarks/search/levers.py, section "search-levers" of benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa


def structure_index(meta: pa.Table) -> npt.NDArray[np.int64]:
    """A structure number per row of ``meta`` (equal for equal InChIKey first blocks)."""
    n = meta.num_rows
    keys = meta.column("inchikey").to_pylist() if "inchikey" in meta.column_names else [None] * n
    key14 = [(k or "")[:14] or f"#{i}" for i, k in enumerate(keys)]
    _, inverse = np.unique(np.asarray(key14, dtype=str), return_inverse=True)
    return inverse.astype(np.int64).reshape(-1)


def structure_groups(query_index: npt.NDArray[np.int64], structure: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Group number of every (query, structure) row."""
    if query_index.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    pair = query_index.astype(np.int64) * (int(structure.max()) + 1) + structure
    _, group = np.unique(pair, return_inverse=True)
    return group.astype(np.int64).reshape(-1)


def group_max(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row: the maximum of ``values`` over its group."""
    if group.shape[0] == 0:
        return np.asarray(values, dtype=np.float64)
    top = np.full(int(group.max()) + 1, -np.inf)
    np.maximum.at(top, group, values)
    return top[group]


def group_mean(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row: the mean of ``values`` over its group."""
    if group.shape[0] == 0:
        return np.asarray(values, dtype=np.float64)
    return (np.bincount(group, weights=values) / np.bincount(group))[group]


def group_second(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row: the second-largest of ``values`` in its group (the largest where the group has one row)."""
    if group.shape[0] == 0:
        return np.asarray(values, dtype=np.float64)
    order = np.lexsort((-values, group))
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    n = int(group.max()) + 1
    best = np.full(n, -np.inf)
    best[g[first]] = values[order][first]
    second = best.copy()
    is_second = np.r_[False, (g[1:] == g[:-1]) & first[:-1]]
    second[g[is_second]] = values[order][is_second]
    return second[group]


def best_other(query_index: npt.NDArray[np.int64], group: npt.NDArray[np.int64],
               values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row: the largest of ``values`` among the query's rows of *other* structures (-1 without any)."""
    if group.shape[0] == 0:
        return np.asarray(values, dtype=np.float64)
    per_group = np.full(int(group.max()) + 1, -np.inf)
    np.maximum.at(per_group, group, values)
    g_query = np.zeros(per_group.shape[0], dtype=np.int64)
    g_query[group] = query_index
    valid = np.isfinite(per_group)
    g_ids = np.flatnonzero(valid)
    order = np.lexsort((-per_group[g_ids], g_query[g_ids]))
    g_sorted, q_sorted = g_ids[order], g_query[g_ids][order]
    first = np.r_[True, q_sorted[1:] != q_sorted[:-1]]
    n_q = int(query_index.max()) + 1
    top_g = np.full(n_q, -1, dtype=np.int64)
    top_v = np.full(n_q, -1.0)
    second_v = np.full(n_q, -1.0)
    top_g[q_sorted[first]] = g_sorted[first]
    top_v[q_sorted[first]] = per_group[g_sorted[first]]
    is_second = np.r_[False, (q_sorted[1:] == q_sorted[:-1]) & first[:-1]]
    second_v[q_sorted[is_second]] = per_group[g_sorted[is_second]]
    return np.where(top_g[query_index] == group, second_v[query_index], top_v[query_index])


def structure_features(query_index: npt.NDArray[np.int64], structure: npt.NDArray[np.int64],
                       features: dict[str, npt.NDArray[np.float64]],
                       names: Sequence[str] = ("entropy", "embedding_cosine")) -> dict[str, npt.NDArray[np.float64]]:
    """Per-structure summaries for every row (see module docs): ``structure_max_<f>``,
    ``structure_mean_<f>``, ``structure_second_<f>`` and ``structure_margin_<f>`` (the structure's maximum
    minus the best other structure's) for each feature ``f`` in ``names``, and ``log_structure_spectra``."""
    group = structure_groups(query_index, structure)
    out: dict[str, npt.NDArray[np.float64]] = {
        "log_structure_spectra": np.log(np.bincount(group).astype(np.float64))[group] if group.size
        else np.zeros(0)}
    for name in names:
        values = np.asarray(features[name], dtype=np.float64)
        top = group_max(group, values)
        out[f"structure_max_{name}"] = top
        out[f"structure_mean_{name}"] = group_mean(group, values)
        out[f"structure_second_{name}"] = group_second(group, values)
        out[f"structure_margin_{name}"] = top - best_other(query_index, group, values)
    return out
