"""Comparing the results of two annotate runs (a reference and a rerun or resumed one)."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Relative difference allowed between float scores of two runs. The same chunk computed in another
#: process can differ in the last bits of a float32 score (SIMD and BLAS sums depend on the memory
#: alignment of their arrays); everything else, every id, hit and count, must be identical.
FLOAT_RTOL = 1e-6


def assert_same_results(got: Sequence[dict[str, object]], want: Sequence[dict[str, object]]) -> None:
    """Same rows in the same order with the same values; floats equal to :data:`FLOAT_RTOL`."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys(), f"row {i}: columns differ"
        for name, value in w.items():
            other = g[name]
            if isinstance(value, float) and isinstance(other, float):
                same = (math.isnan(value) and math.isnan(other)) or math.isclose(other, value, rel_tol=FLOAT_RTOL,
                                                                                  abs_tol=1e-12)
                assert same, f"row {i} ({w.get('query_id')}), {name}: {other!r} != {value!r}"
            else:
                assert other == value, f"row {i} ({w.get('query_id')}), {name}: {other!r} != {value!r}"
