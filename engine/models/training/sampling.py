"""Batch sampling: structures per step, one spectrum each, Tanimoto-binned partner spectra (MS2DeepScore)
and hard negatives from each structure's pool (JESTR), plus peak augmentation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.peaks import Peaks
from engine.models.training.data import TRAIN, PreparedData


@dataclass(frozen=True)
class Batch:
    """Indices of one training step."""

    anchors: npt.NDArray[np.int64]           # structure rows (positions in ``train_structs``)
    spectra: npt.NDArray[np.int64]           # spectrum rows, one per anchor
    partners: npt.NDArray[np.int64]          # partner structure positions, ``partners_per_anchor`` per anchor
    partner_spectra: npt.NDArray[np.int64]   # (anchor-major: anchor 0's partners first)
    pair_tanimoto: npt.NDArray[np.float32]   # Tanimoto(anchor, partner)
    molecules: npt.NDArray[np.int64]         # graph rows: the anchors' structures, then hard negatives
    negative_owner: npt.NDArray[np.int64]    # for each hard negative, the batch position of its anchor


class Sampler:
    """Samples :class:`Batch` es over the clean training spectra of ``data``."""

    def __init__(self, data: PreparedData, tanimoto: npt.NDArray[np.float16], *, batch_structures: int,
                 hard_negatives: int, n_bins: int = 10, partners_per_anchor: int = 1) -> None:
        self.data = data
        self.tanimoto = tanimoto       # [T, T] between train_structs
        self.batch_structures = batch_structures
        self.hard_negatives = hard_negatives
        self.n_bins = n_bins
        self.partners_per_anchor = partners_per_anchor
        usable = (data.spec_split == TRAIN) & data.spec_clean
        rows = np.flatnonzero(usable)
        structs = data.spec_struct[rows]
        self.train_structs = np.unique(structs)
        pos = np.searchsorted(self.train_structs, structs)
        order = np.argsort(pos, kind="stable")
        self.spec_rows = rows[order]
        counts = np.bincount(pos, minlength=self.train_structs.shape[0])
        self.spec_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.train_structs.shape[0] // self.batch_structures)

    def random_spectra(self, positions: npt.NDArray[np.int64], rng: np.random.Generator) -> npt.NDArray[np.int64]:
        lo, hi = self.spec_ptr[positions], self.spec_ptr[positions + 1]
        return self.spec_rows[lo + (rng.random(positions.shape[0]) * (hi - lo)).astype(np.int64)]

    def partners(self, anchors: npt.NDArray[np.int64], rng: np.random.Generator
                 ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """One partner per anchor, its Tanimoto bin drawn uniformly (nearest non-empty bin if empty)."""
        sims = self.tanimoto[anchors].astype(np.float32)
        bins = np.minimum((sims * self.n_bins).astype(np.int64), self.n_bins - 1)
        counts = np.stack([(bins == b).sum(1) for b in range(self.n_bins)], axis=1)
        target: npt.NDArray[np.int64] = rng.integers(0, self.n_bins, size=int(anchors.shape[0]))
        distance = np.abs(np.arange(self.n_bins)[None, :] - target[:, None]).astype(np.float64)
        distance[counts == 0] = np.inf
        distance += rng.random(distance.shape) * 0.1     # break ties at random
        chosen_bin: npt.NDArray[np.int64] = distance.argmin(axis=1)
        keys = rng.random(sims.shape) * (bins == chosen_bin[:, None])
        partner = keys.argmax(1).astype(np.int64)
        return partner, sims[np.arange(anchors.shape[0]), partner]

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        order = rng.permutation(self.train_structs.shape[0])
        b = self.batch_structures
        for start in range(0, len(self) * b, b):
            anchors = order[start:start + b].astype(np.int64)
            partners, sims = self.partners(np.repeat(anchors, self.partners_per_anchor), rng)
            negatives, owners = [], []
            for position, a in enumerate(self.train_structs[anchors]):
                pool = self.data.neg_rows[self.data.neg_ptr[a]:self.data.neg_ptr[a + 1]]
                if pool.shape[0] and self.hard_negatives:
                    negatives.append(rng.choice(pool, size=min(self.hard_negatives, pool.shape[0]),
                                                replace=False))
                    owners.append(np.full(negatives[-1].shape[0], position, np.int64))
            neg = np.concatenate(negatives) if negatives else np.zeros(0, np.int64)
            owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
            yield Batch(anchors=anchors, spectra=self.random_spectra(anchors, rng), partners=partners,
                        partner_spectra=self.random_spectra(partners, rng), pair_tanimoto=sims,
                        molecules=np.concatenate([self.train_structs[anchors], neg]).astype(np.int64),
                        negative_owner=owner)


def augment(peaks: Peaks, rng: np.random.Generator, *, peak_dropout: float,
            intensity_jitter: float) -> Peaks:
    """Drop weaker peaks at random (never the base peak) and jitter intensities multiplicatively."""
    if peaks.mz.shape[0] == 0 or (peak_dropout <= 0 and intensity_jitter <= 0):
        return peaks
    inten = peaks.intensity
    drop = (rng.random(inten.shape[0]) < peak_dropout) & (inten < 0.999)
    jitter = np.clip(1.0 + rng.normal(0.0, intensity_jitter, inten.shape[0]), 0.3, 2.0).astype(np.float32)
    keep = ~drop
    return peaks.with_intensity(inten * jitter).keep(keep)
