"""The rows a targets-only search leaves out: every decoy of the library, read the same way whether or not
the library's rows are preloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from engine.queries.references import References
from indexes.library import Library

LIBRARY = Path(__file__).resolve().parents[2] / "engine" / "data" / "library"


def test_decoy_rows_preloaded_or_not() -> None:
    lib = Library.open(LIBRARY)
    table = lib.table.table.to_lance().to_table(columns=["row_id", "is_decoy"])
    want = np.sort(table.filter(pc.field("is_decoy")).column("row_id").to_numpy())
    assert want.size > 0
    for preload in (True, False):
        refs = References(lib, preload=preload)
        got = refs.decoy_rows()
        assert np.array_equal(np.sort(got), want)
        assert refs.is_decoy(got).all()
