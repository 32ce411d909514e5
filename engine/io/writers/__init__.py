"""Writers of spectra: MGF text and Parquet files of the engine's spectrum schema."""

from __future__ import annotations

from engine.io.writers.mgf import write_mgf
from engine.io.writers.parquet import write_spectra, write_spectra_parquet

__all__ = ["write_mgf", "write_spectra", "write_spectra_parquet"]
