"""Annotation engine for tandem mass spectra at repository scale."""

__version__ = "0.1.0"
