from __future__ import annotations

import math

import numpy as np
import pytest

from indexes.partition import PartitionScheme


def test_route_tiles_every_mass_of_each_mode() -> None:
    scheme = PartitionScheme({"negative": (), "positive": (200.0, 500.0)})
    names = [p.name for p in scheme.partitions]
    assert names == ["negative-000", "positive-000", "positive-001", "positive-002"]
    modes = ["positive", "positive", "positive", "positive", "negative", "negative", None]
    mass = np.array([10.0, 199.99, 200.0, 1e6, 1.0, 5000.0, 300.0])
    assert scheme.route(modes, mass).tolist() == [1, 1, 2, 3, 0, 0, -1]
    last = scheme.partitions[-1]
    assert last.mass_lo == 500.0 and math.isinf(last.mass_hi)


def test_overlapping_windows() -> None:
    scheme = PartitionScheme({"negative": (300.0,), "positive": (200.0, 500.0)})
    assert scheme.overlapping("positive", 199.0, 201.0) == [2, 3]
    assert scheme.overlapping("positive", 200.0, 200.0) == [3]
    assert scheme.overlapping(None, 250.0, 260.0) == [0, 3]


def test_plan_respects_target_rows() -> None:
    rng = np.random.default_rng(0)
    mass = rng.uniform(100, 1000, 10_000)
    modes = np.where(rng.random(10_000) < 0.8, "positive", "negative")
    scheme = PartitionScheme.plan(modes, mass, target_rows=3000)
    counts = np.bincount(scheme.route(modes, mass), minlength=len(scheme.partitions))
    assert len(scheme.edges["positive"]) == 2 and len(scheme.edges["negative"]) == 0
    assert counts.sum() == 10_000 and counts.max() <= 3000
    assert PartitionScheme.from_dict(scheme.to_dict()) == scheme


def test_bad_edges_refused() -> None:
    with pytest.raises(ValueError):
        PartitionScheme({"positive": (500.0, 200.0)})
