"""Vectorised preprocessing and binning of spectrum batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.core.peaks import Peaks
from engine.core.preprocess import STEP_PARAMS, Pipeline
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.models.encoders.spectrum import (
    VECTORISED_STEPS,
    SpectrumEncoder,
    SpectrumEncoderConfig,
    encoder_inputs,
    ion_positive_from_batch,
    preprocess_flat,
)


def _random_spectra(n: int, seed: int = 0) -> list[Spectrum]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.choice([0, 1, 3, 12, 40, 700]))
        mz = np.sort(rng.uniform(5, 1100, k))
        out.append(Spectrum(spectrum_id=f"s{i}", mz=mz, intensity=rng.uniform(0, 100, k).astype(np.float32),
                            precursor_mz=float(rng.uniform(100, 900)),
                            ion_mode="positive" if i % 2 else "negative"))
    return out


PIPELINE = Pipeline((
    ("select_mz_range", {"mz_from": 10.0, "mz_to": 1000.0}),
    ("remove_precursor_peak", {"tolerance_da": 1.6}),
    ("relative_intensity_floor", {"floor": 0.01}),
    ("top_n_peaks", {"n": 50}),
    ("transform_intensity", {"transform": "sqrt"}),
))


def test_vectorised_pipeline_matches_per_spectrum() -> None:
    spectra = _random_spectra(60)
    batch = spectra_to_batch(spectra)
    flat = preprocess_flat(Peaks.from_arrow(batch), PIPELINE)
    assert flat.intensity.dtype == np.float32
    for i, s in enumerate(spectra):
        expected = PIPELINE(s)
        assert expected is not None
        sel = flat.spectrum_of_peak == i
        np.testing.assert_allclose(flat.mz[sel], expected.mz)
        np.testing.assert_allclose(flat.intensity[sel], expected.intensity, rtol=1e-6)


def test_default_parameters_are_shared() -> None:
    """Steps given without parameters take the same defaults per spectrum and vectorised."""
    assert set(STEP_PARAMS) == VECTORISED_STEPS | {"require_min_peaks"}
    bare = Pipeline(tuple((name, {}) for name in ("select_mz_range", "remove_precursor_peak",
                                                   "relative_intensity_floor", "top_n_peaks",
                                                   "transform_intensity")))
    spectra = _random_spectra(40, seed=3)
    flat = preprocess_flat(Peaks.from_spectra(spectra), bare)
    for i, s in enumerate(spectra):
        expected = bare(s)
        assert expected is not None
        sel = flat.spectrum_of_peak == i
        np.testing.assert_allclose(flat.mz[sel], expected.mz)
        np.testing.assert_allclose(flat.intensity[sel], expected.intensity, rtol=1e-6)
    with pytest.raises(ValueError, match="top_n_peaks"):
        Pipeline((("top_n_peaks", {"k": 3}),))


def test_preprocessing_is_kept_with_the_peaks() -> None:
    peaks = Peaks.from_arrow(spectra_to_batch(_random_spectra(8, seed=2)))
    assert preprocess_flat(peaks, PIPELINE) is preprocess_flat(peaks, PIPELINE)
    assert preprocess_flat(peaks, Pipeline()) is not preprocess_flat(peaks, PIPELINE)


def test_binning_and_side_features() -> None:
    config = SpectrumEncoderConfig(bin_width=0.1, neutral_loss_max=200.0)
    peaks = Peaks(mz=np.array([10.05, 150.26, 1000.0]), intensity=np.array([0.5, 1.0, 1.0], np.float32),
                  offsets=np.array([0, 2, 3]), precursor_mz=np.array([200.0, np.nan]))
    inputs = encoder_inputs(peaks, np.array([True, False]), config)
    assert inputs.peak_idx.tolist() == [0, 1402, config.n_bins - 1]
    assert inputs.peak_off.tolist() == [0, 2]
    np.testing.assert_allclose(np.linalg.norm(inputs.peak_w[:2]), 1.0, rtol=1e-6)   # unit weights
    assert inputs.loss_idx.tolist() == [1899, 497]      # 200 - 10.05 and 200 - 150.26
    assert inputs.side[:, 2].tolist() == [1.0, -1.0]     # ion mode
    assert inputs.side[1, 4] == 1.0                      # no precursor flag
    assert inputs.n_peaks.tolist() == [2, 1]


def test_ion_mode_from_charge_when_missing() -> None:
    spectra = [Spectrum("a", np.array([100.0]), np.array([1.0], np.float32), 300.0, charge=-1),
               Spectrum("b", np.array([100.0]), np.array([1.0], np.float32), 300.0, ion_mode="negative"),
               Spectrum("c", np.array([100.0]), np.array([1.0], np.float32), 300.0)]
    assert ion_positive_from_batch(spectra_to_batch(spectra)).tolist() == [False, False, True]


def test_empty_spectrum_gets_an_embedding() -> None:
    config = SpectrumEncoderConfig(bag_dim=16, hidden_dims=(16,))
    torch.manual_seed(0)
    enc = SpectrumEncoder(config, 8).eval()
    peaks = Peaks(np.zeros(0), np.zeros(0, np.float32), np.array([0, 0]), np.array([300.0]))
    out = enc.forward_inputs(encoder_inputs(peaks, np.array([True]), config))
    assert out.shape == (1, 8) and torch.isfinite(out).all()


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SpectrumEncoderConfig(mz_from=100, mz_to=50)
    assert SpectrumEncoderConfig().n_bins == 9900
