"""A tiny training config over the MassBank fixture in tests/data/model (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models.encoders.molecule import MoleculeEncoderConfig
from engine.models.encoders.spectrum import SpectrumEncoderConfig
from engine.models.model import ModelConfig
from engine.models.quality import QualityConfig
from engine.models.training.config import DataConfig, TrainConfig, TrainSettings

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "model"


def tiny_config(out_dir: Path, *, name: str = "tiny", epochs: int = 2) -> TrainConfig:
    return TrainConfig(
        name=name, seed=3, out_dir=str(out_dir),
        data=DataConfig(spectra=str(FIXTURES / "massbank_tiny.parquet"),
                        candidates=str(FIXTURES / "candidates_tiny.parquet"),
                        calibration_fraction=0.0, negative_pool=4, mass_neighbours=16,
                        cache_dir=str(out_dir / "cache")),
        model=ModelConfig(dim=16, spectrum=SpectrumEncoderConfig(bag_dim=16, hidden_dims=(16,)),
                          molecule=MoleculeEncoderConfig(hidden_dim=16, n_layers=2, head_dim=16),
                          quality=QualityConfig(n_reference=16, k=4)),
        train=TrainSettings(epochs=epochs, batch_structures=4, hard_negatives=2, val_max_spectra=50,
                            val_pairs=40, warmup_epochs=1))


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from engine.models.training.loop import train

    out = tmp_path_factory.mktemp("tiny_run")
    return train(tiny_config(out), progress=False)
