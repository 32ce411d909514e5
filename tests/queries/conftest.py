"""Fixtures for the query tests: a small real MassBank sample shipped in tests/data/queries."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from query_helpers import table_to_spectra

from engine.core.records import Spectrum

DATA = Path(__file__).resolve().parents[1] / "data" / "queries"


@pytest.fixture(scope="session")
def massbank_sample() -> pa.Table:
    return pq.read_table(DATA / "massbank_sample.parquet")


@pytest.fixture(scope="session")
def sample_spectra(massbank_sample: pa.Table) -> list[Spectrum]:
    return table_to_spectra(massbank_sample)


@pytest.fixture(scope="session")
def tiny_model() -> object:
    """An untrained small joint model (deterministic): exercises every path that needs the real model."""
    import torch

    from engine.models.encoders.molecule import MoleculeEncoderConfig
    from engine.models.encoders.spectrum import SpectrumEncoderConfig
    from engine.models.model import JointModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(dim=32, spectrum=SpectrumEncoderConfig(bag_dim=32, hidden_dims=(32,)),
                         molecule=MoleculeEncoderConfig(hidden_dim=32, n_layers=2, head_dim=32))
    return JointModel(config).eval()
