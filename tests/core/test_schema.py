import numpy as np
import pyarrow as pa
import pytest

from engine.core.errors import IncompatibleArtifactError
from engine.core.records import Spectrum
from engine.core.schema import (
    SCHEMA_VERSION,
    SPECTRUM_SCHEMA,
    batch_to_spectra,
    check_schema_version,
    spectra_to_batch,
    spectrum_schema,
)


def test_spectra_batch_round_trip() -> None:
    spectra = [
        Spectrum("a", np.array([10.5, 20.25]), np.array([1.0, 0.5], np.float32), 300.1, 1, "positive",
                 "f.mgf", adduct="[M+H]+", smiles="CCO", metadata={"collision_energy_ev": "35"}),
        Spectrum("b", np.array([99.0]), np.array([7.0], np.float32), 150.0, -1, "negative", "f.mgf",
                 retention_time=61.5),
    ]
    batch = spectra_to_batch(spectra, file_sha256="abc", record_indices=[0, 3])
    assert batch.schema.equals(SPECTRUM_SCHEMA, check_metadata=True)
    assert batch.column("n_peaks").to_pylist() == [2, 1]
    back = list(batch_to_spectra(batch))
    assert [s.spectrum_id for s in back] == ["a", "b"]
    assert back[0].mz.tolist() == [10.5, 20.25] and back[0].metadata == {"collision_energy_ev": "35"}
    assert back[1].retention_time == 61.5 and back[1].ion_mode == "negative"


def test_schema_version_is_checked() -> None:
    check_schema_version(SPECTRUM_SCHEMA, where="t")
    assert spectrum_schema(16).field("embedding").type == pa.list_(pa.float32(), 16)
    with pytest.raises(IncompatibleArtifactError, match="not written by this engine"):
        check_schema_version(pa.schema([pa.field("x", pa.int8())]), where="t")
    other = SPECTRUM_SCHEMA.with_metadata({b"engine.schema_version": str(SCHEMA_VERSION + 1).encode()})
    with pytest.raises(IncompatibleArtifactError, match="schema version"):
        check_schema_version(other, where="t")
