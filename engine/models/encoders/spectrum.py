"""Spectrum encoder (MS2DeepScore 2 style) and vectorised peak binning straight from Arrow list arrays.

Peaks are preprocessed by the model's :class:`~engine.core.preprocess.Pipeline` (re-implemented here on flat
arrays so that a batch of 1,024 spectra needs no per-spectrum Python loop), binned at ``bin_width`` Da
and fed to an ``nn.EmbeddingBag`` weighted by the (transformed, L2-normalised) intensities, which is a
dense first layer over the binned vector without materialising it. Neutral losses (precursor m/z minus
fragment m/z) get a second bag. Precursor m/z and ion mode enter as side features, so one model embeds
positive, negative and cross-mode pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from engine.core.preprocess import Pipeline

#: Pipeline steps :func:`preprocess_flat` implements on flat arrays.
VECTORISED_STEPS = frozenset({"select_mz_range", "relative_intensity_floor", "top_n_peaks",
                              "transform_intensity", "remove_precursor_peak"})
N_SIDE_FEATURES = 5


@dataclass(frozen=True)
class SpectrumEncoderConfig:
    """Binning and shape of the spectrum encoder."""

    mz_from: float = 10.0
    mz_to: float = 1000.0
    bin_width: float = 0.1
    neutral_loss_max: float = 200.0   # 0 disables the neutral-loss bag
    bag_dim: int = 384
    hidden_dims: tuple[int, ...] = (512,)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.mz_from < self.mz_to) or self.bin_width <= 0:
            raise ValueError("spectrum encoder needs 0 <= mz_from < mz_to and bin_width > 0")
        if self.bag_dim < 1 or any(d < 1 for d in self.hidden_dims):
            raise ValueError("spectrum encoder sizes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"spectrum dropout must be in [0, 1), got {self.dropout}")

    @property
    def n_bins(self) -> int:
        return math.ceil(round((self.mz_to - self.mz_from) / self.bin_width, 6))

    @property
    def n_loss_bins(self) -> int:
        return math.ceil(round(self.neutral_loss_max / self.bin_width, 6))


@dataclass(frozen=True)
class FlatPeaks:
    """Peaks of ``n`` spectra in flat arrays: ``seg[k]`` is the spectrum of peak ``k`` (non-decreasing)."""

    seg: npt.NDArray[np.int64]
    mz: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float32]
    precursor_mz: npt.NDArray[np.float64]
    n: int

    def counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.seg, minlength=self.n).astype(np.int64)

    def keep(self, mask: npt.NDArray[np.bool_]) -> FlatPeaks:
        return FlatPeaks(self.seg[mask], self.mz[mask], self.intensity[mask], self.precursor_mz, self.n)


def flat_from_batch(batch: pa.RecordBatch | pa.Table) -> FlatPeaks:
    """Flat peak arrays of a record batch of the spectrum schema (works on sliced batches too)."""
    mz_col: Any = batch.column("mz")
    in_col: Any = batch.column("intensity")
    if isinstance(mz_col, pa.ChunkedArray):
        mz_col = mz_col.combine_chunks()
        in_col = in_col.combine_chunks()
    n = len(mz_col)
    lengths = pc.list_value_length(mz_col).fill_null(0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    mz = mz_col.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    inten = in_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    prec_col: Any = batch.column("precursor_mz")
    prec = np.asarray(prec_col.to_numpy(zero_copy_only=False), dtype=np.float64)
    seg = np.repeat(np.arange(n, dtype=np.int64), lengths)
    return FlatPeaks(seg, mz, inten, np.nan_to_num(prec, nan=0.0), n)


def _segment_max(values: npt.NDArray[np.float32], seg: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float32]:
    out = np.zeros(n, dtype=np.float32)
    if values.shape[0] == 0:
        return out
    starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]]))
    out[seg[starts]] = np.maximum.reduceat(values, starts)
    return out


def preprocess_flat(peaks: FlatPeaks, pipeline: Pipeline) -> FlatPeaks:
    """Apply ``pipeline`` to all spectra at once; same result as calling it on each spectrum.

    Rejection steps (``require_min_peaks``) are not applied: embedding keeps every row and lets the
    quality estimate flag spectra with too little information.
    """
    for name, params in pipeline.steps:
        if name == "select_mz_range":
            lo, hi = params.get("mz_from", 10.0), params.get("mz_to", 1000.0)
            peaks = peaks.keep((peaks.mz >= lo) & (peaks.mz <= hi))
        elif name == "remove_precursor_peak":
            tol = params.get("tolerance_da", 1.6)
            prec = peaks.precursor_mz[peaks.seg]
            peaks = peaks.keep((prec <= 0) | (peaks.mz < prec - tol))
        elif name == "relative_intensity_floor":
            base = _segment_max(peaks.intensity, peaks.seg, peaks.n)
            peaks = peaks.keep(peaks.intensity >= params.get("floor", 0.001) * base[peaks.seg])
        elif name == "top_n_peaks":
            top = int(params.get("n", 500))
            counts = peaks.counts()
            if (counts > top).any():
                order = np.lexsort((-peaks.intensity, peaks.seg))
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
                rank = np.empty_like(order)
                rank[order] = np.arange(order.shape[0]) - starts[peaks.seg[order]]
                peaks = peaks.keep(rank < top)
        elif name == "transform_intensity":
            base = _segment_max(peaks.intensity, peaks.seg, peaks.n)
            inten = peaks.intensity / np.maximum(base[peaks.seg], np.finfo(np.float32).tiny)
            transform = params.get("transform", "sqrt")
            if transform == "sqrt":
                inten = np.sqrt(inten)
            elif transform == "log1p":
                inten = np.log1p(inten * 100.0) / np.log1p(100.0)
            elif transform != "none":
                raise ValueError(f"unknown intensity transform {transform!r}")
            peaks = FlatPeaks(peaks.seg, peaks.mz, inten.astype(np.float32), peaks.precursor_mz, peaks.n)
        elif name == "require_min_peaks":
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
    counts = np.bincount(seg, minlength=n)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _unit_weights(w: npt.NDArray[np.float32], seg: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float32]:
    norm = np.sqrt(np.bincount(seg, weights=w.astype(np.float64) ** 2, minlength=n))
    return (w / np.maximum(norm[seg], 1e-12)).astype(np.float32)


def encoder_inputs(peaks: FlatPeaks, ion_positive: npt.NDArray[np.bool_],
                   config: SpectrumEncoderConfig) -> SpectrumInputs:
    """Bin preprocessed peaks and build the side features (precursor m/z, ion mode, peak count)."""
    n = peaks.n
    idx = np.floor((peaks.mz - config.mz_from) / config.bin_width).astype(np.int64)
    ok = (peaks.mz >= config.mz_from) & (peaks.mz <= config.mz_to)
    idx = np.minimum(idx, config.n_bins - 1)
    seg, idx, w = peaks.seg[ok], idx[ok], peaks.intensity[ok]
    peak_w = _unit_weights(w, seg, n)
    if config.neutral_loss_max > 0:
        loss = peaks.precursor_mz[peaks.seg] - peaks.mz
        lidx = np.floor(loss / config.bin_width).astype(np.int64)
        lok = (loss > 0.5) & (lidx < config.n_loss_bins) & (peaks.precursor_mz[peaks.seg] > 0)
        lseg, lidx, lw = peaks.seg[lok], lidx[lok], peaks.intensity[lok]
        loss_w = _unit_weights(lw, lseg, n)
    else:
        lseg, lidx, loss_w = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    n_peaks = np.bincount(seg, minlength=n).astype(np.int64)
    prec = peaks.precursor_mz
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
