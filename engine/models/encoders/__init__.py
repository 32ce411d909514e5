"""Encoders mapping spectra and molecules into one vector space."""
