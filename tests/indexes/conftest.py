"""Fixtures for the vector-store tests."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vs_helpers import SAMPLE, Embedded, embed_sample


@pytest.fixture(scope="session")
def sample_table() -> pa.Table:
    return pq.read_table(SAMPLE)


@pytest.fixture(scope="session")
def embedded(sample_table: pa.Table) -> Embedded:
    """214 real spectra and 9 perturbed copies of each, embedded (dim 32)."""
    return embed_sample(sample_table)
