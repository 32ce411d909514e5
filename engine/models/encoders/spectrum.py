"""Spectrum encoder (MS2DeepScore 2 style) and vectorised peak binning straight from Arrow list arrays.

Peaks (:class:`~engine.core.peaks.Peaks`) are preprocessed by the model's
:class:`~engine.core.preprocess.Pipeline` (re-implemented here on flat arrays so that a batch of spectra needs
no per-spectrum Python loop), binned at ``bin_width`` Da
and fed to an ``nn.EmbeddingBag`` weighted by the (transformed, L2-normalised) intensities, which is a
dense first layer over the binned vector without materialising it. Neutral losses (precursor m/z minus
fragment m/z) get a second bag. Precursor m/z and ion mode enter as side features, so one model embeds
positive, negative and cross-mode pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from engine.core.config import Settings, setting
from engine.core.peaks import Peaks, offsets_of
from engine.core.preprocess import (
    IntensityFloor,
    IntensityTransform,
    MinPeaks,
    MzRange,
    Pipeline,
    PrecursorRemoval,
    TopPeaks,
)

#: Pipeline steps :func:`preprocess_flat` implements on flat arrays (their parameters and defaults are
#: those of :data:`engine.core.preprocess.STEP_PARAMS`, shared with the per-spectrum filters).
VECTORISED_STEPS = frozenset({"select_mz_range", "relative_intensity_floor", "top_n_peaks",
                              "transform_intensity", "remove_precursor_peak"})
N_SIDE_FEATURES = 5


@dataclass(frozen=True)
class SpectrumEncoderConfig(Settings):
    """Binning and shape of the spectrum encoder."""

    mz_from: float = setting(10.0, ge=0)
    mz_to: float = 1000.0
    bin_width: float = setting(0.1, gt=0)
    neutral_loss_max: float = 200.0   # 0 disables the neutral-loss bag
    bag_dim: int = setting(384, ge=1)
    hidden_dims: tuple[int, ...] = (512,)
    dropout: float = setting(0.2, ge=0, lt=1)

    def check(self) -> Iterable[str]:
        if self.mz_from >= self.mz_to:
            yield "need mz_from < mz_to"
        if any(d < 1 for d in self.hidden_dims):
            yield "hidden_dims must be positive"

    @property
    def n_bins(self) -> int:
        return math.ceil(round((self.mz_to - self.mz_from) / self.bin_width, 6))

    @property
    def n_loss_bins(self) -> int:
        return math.ceil(round(self.neutral_loss_max / self.bin_width, 6))


def _segment_max(values: npt.NDArray[np.float32], peaks: Peaks) -> npt.NDArray[np.float32]:
    """Per peak: the largest value of its spectrum."""
    out = np.zeros(len(peaks), dtype=np.float32)
    if values.shape[0] == 0:
        return out
    counts = peaks.n_peaks
    filled = counts > 0
    out[filled] = np.maximum.reduceat(values, peaks.offsets[:-1][filled])
    return out[peaks.spectrum_of_peak]


def preprocess_flat(peaks: Peaks, pipeline: Pipeline) -> Peaks:
    """Apply ``pipeline`` to all spectra at once; same result as calling it on each spectrum. Intensities
    come out float32 (the encoder's input). The result is kept with ``peaks`` (:meth:`Peaks.derived`), so
    the stages that read one chunk preprocess it once.

    Rejection steps (``require_min_peaks``) are not applied: embedding keeps every row and lets the
    quality estimate flag spectra with too little information.
    """
    return peaks.derived(("preprocess", pipeline.digest()), lambda: _preprocess(peaks, pipeline))


def _preprocess(peaks: Peaks, pipeline: Pipeline) -> Peaks:
    peaks = peaks.with_intensity(peaks.intensity.astype(np.float32, copy=False))
    for name, params in pipeline.resolved():
        if isinstance(params, MzRange):
            peaks = peaks.keep((peaks.mz >= params.mz_from) & (peaks.mz <= params.mz_to))
        elif isinstance(params, PrecursorRemoval):
            prec = peaks.precursor_mz[peaks.spectrum_of_peak]
            peaks = peaks.keep(~(prec > 0) | (peaks.mz < prec - params.tolerance_da))
        elif isinstance(params, IntensityFloor):
            base = _segment_max(peaks.intensity, peaks)
            peaks = peaks.keep(peaks.intensity >= params.floor * base)
        elif isinstance(params, TopPeaks):
            counts = peaks.n_peaks
            if (counts > params.n).any():
                seg = peaks.spectrum_of_peak
                order = np.lexsort((-peaks.intensity, seg))
                rank = np.empty_like(order)
                rank[order] = np.arange(order.shape[0]) - peaks.offsets[seg[order]]
                peaks = peaks.keep(rank < params.n)
        elif isinstance(params, IntensityTransform):
            base = _segment_max(peaks.intensity, peaks)
            inten = peaks.intensity / np.maximum(base, np.finfo(np.float32).tiny)
            if params.transform == "sqrt":
                inten = np.sqrt(inten)
            elif params.transform == "log1p":
                inten = np.log1p(inten * 100.0) / np.log1p(100.0)
            elif params.transform != "none":
                raise ValueError(f"unknown intensity transform {params.transform!r}")
            peaks = peaks.with_intensity(inten.astype(np.float32))
        elif isinstance(params, MinPeaks):
            continue
        else:
            raise ValueError(f"pipeline step {name!r} cannot be applied before embedding; "
                             f"supported: {', '.join(sorted(VECTORISED_STEPS))}")
    return peaks


@dataclass(frozen=True)
class SpectrumInputs:
    """Tensors the spectrum encoder consumes (numpy; see :meth:`SpectrumEncoder.forward_inputs`)."""

    peak_idx: npt.NDArray[np.int64]
    peak_w: npt.NDArray[np.float32]
    peak_off: npt.NDArray[np.int64]
    loss_idx: npt.NDArray[np.int64]
    loss_w: npt.NDArray[np.float32]
    loss_off: npt.NDArray[np.int64]
    side: npt.NDArray[np.float32]      # [n, N_SIDE_FEATURES]
    n_peaks: npt.NDArray[np.int64]

    @property
    def n(self) -> int:
        return int(self.side.shape[0])


def _offsets(seg: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    return offsets_of(np.bincount(seg, minlength=n))[:-1]


def _unit_weights(w: npt.NDArray[np.float32], seg: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float32]:
    norm = np.sqrt(np.bincount(seg, weights=w.astype(np.float64) ** 2, minlength=n))
    return (w / np.maximum(norm[seg], 1e-12)).astype(np.float32)


def encoder_inputs(peaks: Peaks, ion_positive: npt.NDArray[np.bool_],
                   config: SpectrumEncoderConfig) -> SpectrumInputs:
    """Bin preprocessed peaks and build the side features (precursor m/z, ion mode, peak count); a missing
    precursor m/z counts as 0."""
    n = len(peaks)
    prec = np.nan_to_num(peaks.precursor_mz, nan=0.0)
    all_seg, intensity = peaks.spectrum_of_peak, peaks.intensity
    idx = np.floor((peaks.mz - config.mz_from) / config.bin_width).astype(np.int64)
    ok = (peaks.mz >= config.mz_from) & (peaks.mz <= config.mz_to)
    idx = np.minimum(idx, config.n_bins - 1)
    seg, idx, w = all_seg[ok], idx[ok], intensity[ok]
    peak_w = _unit_weights(w, seg, n)
    if config.neutral_loss_max > 0:
        loss = prec[all_seg] - peaks.mz
        lidx = np.floor(loss / config.bin_width).astype(np.int64)
        lok = (loss > 0.5) & (lidx < config.n_loss_bins) & (prec[all_seg] > 0)
        lseg, lidx, lw = all_seg[lok], lidx[lok], intensity[lok]
        loss_w = _unit_weights(lw, lseg, n)
    else:
        lseg, lidx, loss_w = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    n_peaks = np.bincount(seg, minlength=n).astype(np.int64)
    pos = ion_positive.astype(np.float32)
    side = np.stack([prec / 1000.0, np.log1p(prec) / 7.0, pos * 2.0 - 1.0,
                     np.log1p(n_peaks) / 6.0, (prec <= 0).astype(np.float64)], axis=1).astype(np.float32)
    return SpectrumInputs(idx, peak_w, _offsets(seg, n), lidx, loss_w.astype(np.float32), _offsets(lseg, n),
                          side, n_peaks)


def ion_positive_from_batch(batch: pa.RecordBatch | pa.Table) -> npt.NDArray[np.bool_]:
    """``True`` for positive-mode rows; rows without ion mode take the charge's sign, else positive."""
    modes: Any = batch.column("ion_mode")
    positive: Any = pc.starts_with(pc.utf8_lower(modes), "pos")
    if "charge" in batch.schema.names:
        charge: Any = batch.column("charge")
        positive = pc.if_else(pc.is_null(positive), pc.greater_equal(charge, pa.scalar(0, pa.int8())), positive)
    return np.asarray(positive.fill_null(True).to_numpy(zero_copy_only=False), dtype=bool)


class SpectrumEncoder(nn.Module):
    """EmbeddingBag over peak bins (+ neutral-loss bins) and side features, then an MLP."""

    def __init__(self, config: SpectrumEncoderConfig, out_dim: int) -> None:
        super().__init__()
        self.config = config
        self.peak_bag = nn.EmbeddingBag(config.n_bins, config.bag_dim, mode="sum")
        self.loss_bag = (nn.EmbeddingBag(config.n_loss_bins, config.bag_dim, mode="sum")
                         if config.neutral_loss_max > 0 else None)
        self.side = nn.Linear(N_SIDE_FEATURES, config.bag_dim)
        layers: list[nn.Module] = [nn.LayerNorm(config.bag_dim), nn.ReLU(), nn.Dropout(config.dropout)]
        width = config.bag_dim
        for h in config.hidden_dims:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)
        nn.init.normal_(self.peak_bag.weight, std=0.1)
        if self.loss_bag is not None:
            nn.init.normal_(self.loss_bag.weight, std=0.1)

    def forward(self, peak_idx: torch.Tensor, peak_w: torch.Tensor, peak_off: torch.Tensor,
                loss_idx: torch.Tensor, loss_w: torch.Tensor, loss_off: torch.Tensor,
                side: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings ``[n, out_dim]``."""
        h = self.peak_bag(peak_idx, peak_off, per_sample_weights=peak_w) + self.side(side)
        if self.loss_bag is not None:
            h = h + 0.5 * self.loss_bag(loss_idx, loss_off, per_sample_weights=loss_w)
        return self.mlp(h)

    def forward_inputs(self, inputs: SpectrumInputs, device: str | torch.device = "cpu") -> torch.Tensor:
        def t(a: Any) -> torch.Tensor:
            return torch.from_numpy(a).to(device)

        return self(t(inputs.peak_idx), t(inputs.peak_w), t(inputs.peak_off), t(inputs.loss_idx),
                    t(inputs.loss_w), t(inputs.loss_off), t(inputs.side))
