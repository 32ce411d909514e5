"""Settings of a training run, read from one TOML file (``engine train --config CONFIG.toml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.core.config import load_toml
from engine.models.model import ModelConfig

REDISTRIBUTABLE_LICENSES: tuple[str, ...] = ("CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0")


@dataclass(frozen=True)
class DataConfig:
    """Where the training data is and how it is filtered. Paths are relative to the working directory."""

    spectra: str = "../shared/data/massbank/spectra.parquet"
    candidates: str = "../shared/data/molecules/candidates.parquet"
    #: licences of the training records (train split); empty: all. Val is used whatever its licence.
    licenses: tuple[str, ...] = REDISTRIBUTABLE_LICENSES
    #: regular expression on ``instrument_type`` selecting high-resolution instruments; empty: all
    instrument_pattern: str = "TOF|FT"
    min_peaks: int = 5
    max_precursor_ppm_error: float = 20.0
    drop_blacklisted: bool = True
    #: share of train structures (whole scaffold groups) held out to fit the quality estimate
    calibration_fraction: float = 0.08
    #: 0 = all; small values make smoke runs
    max_train_structures: int = 0
    max_val_structures: int = 0
    #: hard-negative pool per training structure: same formula first, then the nearest in mass
    negative_pool: int = 32
    formula_share: float = 0.5
    mass_neighbours: int = 256
    cache_dir: str = "runs/cache"

    def __post_init__(self) -> None:
        if not 0 <= self.calibration_fraction < 0.5:
            raise ValueError("calibration_fraction must be in [0, 0.5)")
        if self.negative_pool < 0 or not 0 <= self.formula_share <= 1:
            raise ValueError("negative_pool must be >= 0 and formula_share in 0..1")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation, sampling and loss weights."""

    epochs: int = 60
    batch_structures: int = 128
    hard_negatives: int = 7
    #: Tanimoto-binned partner spectra per anchor spectrum (spectrum pairs are cheap; molecules are not)
    partners_per_anchor: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 2
    tanimoto_bins: int = 10
    weight_contrastive: float = 1.0
    weight_tanimoto: float = 5.0
    weight_molecule_tanimoto: float = 2.0
    #: listwise loss of each spectrum over its own molecule and its own hard negatives (same formula /
    #: near mass): the candidate-ranking task itself; 0 = off
    weight_candidates: float = 0.0
    #: start from this checkpoint's weights (fine-tuning) instead of a random initialisation; "" = none
    init_from: str = ""
    peak_dropout: float = 0.1
    intensity_jitter: float = 0.1
    val_max_spectra: int = 3000
    val_pairs: int = 6000
    threads: int = 0   # 0: torch default
    #: where the model trains: auto (CUDA when torch sees a GPU), cpu or cuda; the quality fit runs on the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        if (self.epochs < 1 or self.batch_structures < 2 or self.hard_negatives < 0
                or self.partners_per_anchor < 1):
            raise ValueError("epochs >= 1, batch_structures >= 2, hard_negatives >= 0 and "
                             "partners_per_anchor >= 1 required")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run: data, model shape, training settings, seed and output folder."""

    name: str = "default"
    seed: int = 42
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training TOML (unknown keys are an error)."""
    return load_toml(TrainConfig, path)
