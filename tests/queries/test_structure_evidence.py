"""Per-structure evidence: pooled summaries over a query's candidate spectra of one compound."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.queries.structure_evidence import (
    best_other,
    group_second,
    structure_features,
    structure_groups,
    structure_index,
)


def test_structure_index_uses_first_block_and_keeps_missing_keys_apart() -> None:
    meta = pa.table({"inchikey": ["AAAAAAAAAAAAAA-XXXXXXXXXX-N", "AAAAAAAAAAAAAA-YYYYYYYYYY-N", None, None,
                                  "BBBBBBBBBBBBBB-XXXXXXXXXX-N"]})
    s = structure_index(meta)
    assert s[0] == s[1]
    assert len({s[0], s[2], s[3], s[4]}) == 4


def test_structure_features_pool_spectra_per_query_and_structure() -> None:
    # query 0: structure 7 has spectra with entropy 0.9 and 0.5, structure 8 one spectrum at 0.8
    # query 1: structure 7 has one spectrum at 0.3 (a different query: its own group)
    qi = np.array([0, 0, 0, 1])
    structure = np.array([7, 7, 8, 7])
    feats = {"entropy": np.array([0.9, 0.5, 0.8, 0.3]), "embedding_cosine": np.array([0.6, 0.7, 0.9, 0.1])}
    out = structure_features(qi, structure, feats)
    np.testing.assert_allclose(out["structure_max_entropy"], [0.9, 0.9, 0.8, 0.3])
    np.testing.assert_allclose(out["structure_mean_entropy"], [0.7, 0.7, 0.8, 0.3])
    np.testing.assert_allclose(out["structure_second_entropy"], [0.5, 0.5, 0.8, 0.3])
    np.testing.assert_allclose(out["log_structure_spectra"], np.log([2, 2, 1, 1]))
    # margin: the structure's best minus the best other structure's (-1 when the query has no other)
    np.testing.assert_allclose(out["structure_margin_entropy"], [0.1, 0.1, -0.1, 0.3 + 1.0])
    np.testing.assert_allclose(out["structure_margin_embedding_cosine"], [-0.2, -0.2, 0.2, 0.1 + 1.0])


def test_group_helpers_on_empty_input() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert structure_groups(empty, empty).shape == (0,)
    assert group_second(empty, np.zeros(0)).shape == (0,)
    assert best_other(empty, empty, np.zeros(0)).shape == (0,)
    assert structure_features(empty, empty, {"entropy": np.zeros(0), "embedding_cosine": np.zeros(0)})[
        "structure_max_entropy"].shape == (0,)
