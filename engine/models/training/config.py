"""Settings of a training run, read from one TOML file (``engine train --config CONFIG.toml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from engine.core.config import Settings, load_toml, setting
from engine.models.model import ModelConfig

REDISTRIBUTABLE_LICENSES: tuple[str, ...] = ("CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0")


@dataclass(frozen=True)
class DataConfig(Settings):
    """Where the training data is and how it is filtered. Paths are relative to the working directory."""

    spectra: str = "../shared/data/massbank/spectra.parquet"
    candidates: str = "../shared/data/molecules/candidates.parquet"
    #: licences of the training records (train split); empty: all. Val is used whatever its licence.
    licenses: tuple[str, ...] = REDISTRIBUTABLE_LICENSES
    #: regular expression on ``instrument_type`` selecting high-resolution instruments; empty: all
    instrument_pattern: str = "TOF|FT"
    min_peaks: int = setting(5, ge=0)
    max_precursor_ppm_error: float = setting(20.0, gt=0)
    drop_blacklisted: bool = True
    #: share of train structures (whole scaffold groups) held out to fit the quality estimate
    calibration_fraction: float = setting(0.08, ge=0, lt=0.5)
    #: 0 = all; small values make smoke runs
    max_train_structures: int = 0
    max_val_structures: int = 0
    #: hard-negative pool per training structure: same formula first, then the nearest in mass
    negative_pool: int = setting(32, ge=0)
    formula_share: float = setting(0.5, ge=0, le=1)
    mass_neighbours: int = 256
    cache_dir: str = "runs/cache"


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Optimisation, sampling and loss weights."""

    epochs: int = setting(60, ge=1)
    batch_structures: int = setting(128, ge=2)
    hard_negatives: int = setting(7, ge=0)
    #: Tanimoto-binned partner spectra per anchor spectrum (spectrum pairs are cheap; molecules are not)
    partners_per_anchor: int = setting(4, ge=1)
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
    threads: int = setting(0, ge=0)   # 0: torch default
    #: where the model trains: auto (CUDA when torch sees a GPU), cpu or cuda; the quality fit runs on the CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class PretrainSettings(Settings):
    """Molecule-encoder pretraining before the joint training (:mod:`engine.models.training.pretrain`):
    candidate molecules outside MassBank, fingerprint bits and pairwise Tanimoto as targets."""

    #: molecules drawn from the candidates file (none of MassBank's structures); 0 = no pretraining
    molecules: int = setting(0, ge=0)
    epochs: int = setting(3, ge=1)
    batch_molecules: int = setting(256, ge=2)
    lr: float = 1e-3
    weight_fingerprint: float = 1.0
    weight_tanimoto: float = 2.0
    max_mass: float = setting(1000.0, gt=0)
    #: molecules held out of pretraining to report its fit
    held_out: int = setting(2000, ge=0)


@dataclass(frozen=True)
class TrainConfig(Settings):
    """A whole training run: data, model shape, training settings, seed and output folder."""

    name: str = "default"
    seed: int = 42
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training TOML (unknown keys are an error)."""
    return load_toml(TrainConfig, path)
