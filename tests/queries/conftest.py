"""Fixtures for the query tests: a small real MassBank sample shipped in tests/data/queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.records import Spectrum

DATA = Path(__file__).resolve().parents[1] / "data" / "queries"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def massbank_sample() -> pa.Table:
    return pq.read_table(DATA / "massbank_sample.parquet")


def table_to_spectra(table: pa.Table) -> list[Spectrum]:
    out = []
    for r in table.to_pylist():
        out.append(Spectrum(spectrum_id=r["spectrum_id"], mz=np.asarray(r["mz"], dtype=np.float64),
                            intensity=np.asarray(r["intensity"], dtype=np.float32),
                            precursor_mz=r["precursor_mz"], charge=r["charge"], ion_mode=r["ion_mode"],
                            adduct=r["adduct"], name=r["name"], smiles=r["smiles"], inchikey=r["inchikey"],
                            formula=r["formula"]))
    return out


@pytest.fixture(scope="session")
def sample_spectra(massbank_sample: pa.Table) -> list[Spectrum]:
    return table_to_spectra(massbank_sample)
