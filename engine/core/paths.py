"""Where the engine's bundled data lives (``engine/data``): one definition of every shipped artifact's path."""

from __future__ import annotations

from pathlib import Path

#: The package's data directory.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: The bundled joint model checkpoint.
DEFAULT_MODEL = DATA_DIR / "model" / "default.pt"
#: The bundled ensemble members for candidate ranking (``engine rank --ensemble``; see their README).
ENSEMBLE_MEMBERS = DATA_DIR / "model" / "members"
#: The bundled MassBank reference library.
DEFAULT_LIBRARY = DATA_DIR / "library"
#: Search calibrations (fitted on train only).
CALIBRATION_DIR = DATA_DIR / "calibration"
#: The small candidate set shipped with the engine.
BUNDLED_CANDIDATES = DATA_DIR / "candidates" / "molecules.parquet"
