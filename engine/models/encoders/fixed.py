"""Deterministic, training-free embedders: a baseline and a stand-in until the trained model is used.

:class:`FixedSpectrumEmbedder` bins peaks at 1 Da (``floor(mz / bin_width + bin_offset)``), takes the
square root of intensities, projects the bin vector with a fixed seeded Gaussian matrix to ``dim`` and
L2-normalises (a Johnson-Lindenstrauss sketch of the binned cosine). Quality grows with the number of
peaks in range: ``1 - exp(-n_peaks / quality_scale)``. :class:`FixedMoleculeEmbedder` does the same
with RDKit Morgan count fingerprints. The two spaces are not aligned: use them for tests and
benchmarks of the vector store, never to match spectra to molecules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.errors import InvalidMoleculeError
from engine.core.peaks import Peaks
from engine.models.rdkit_util import parse_smiles


def _projection(n_in: int, dim: int, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_in, dim), dtype=np.float32) / np.float32(np.sqrt(dim)))


def _l2_normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _hash(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FixedSpectrumEmbedder:
    """Binned sqrt-intensity peaks -> fixed random projection -> L2 norm. Satisfies ``SpectrumEmbedder``."""

    dim: int = 128
    bin_width: float = 1.0
    bin_offset: float = 0.3
    max_mz: float = 1500.0
    seed: int = 0
    quality_scale: float = 6.0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.bin_width <= 0 or self.max_mz <= 0 or self.quality_scale <= 0:
            raise ValueError("dim, bin_width, max_mz and quality_scale must be positive")

    @property
    def n_bins(self) -> int:
        return int(np.ceil(self.max_mz / self.bin_width))

    @property
    def encoder_hash(self) -> str:
        return _hash("fixed-spectrum-v1", self.dim, self.bin_width, self.bin_offset, self.max_mz, self.seed,
                     self.quality_scale)

    @cached_property
    def _matrix(self) -> npt.NDArray[np.float32]:
        return _projection(self.n_bins, self.dim, self.seed)

    def embed_peaks(self, offsets: npt.NDArray[np.int64], mz: npt.NDArray[np.floating],
                    intensity: npt.NDArray[np.floating]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Embed spectra given as flat peak arrays with ``offsets`` (``n + 1`` values, Arrow style)."""
        n = int(offsets.shape[0] - 1)
        counts = np.diff(offsets)
        row = np.repeat(np.arange(n, dtype=np.int64), counts)
        bins = np.floor(np.asarray(mz, dtype=np.float64)[offsets[0]:offsets[-1]] / self.bin_width
                        + self.bin_offset).astype(np.int64)
        weight = np.sqrt(np.maximum(np.asarray(intensity, dtype=np.float32)[offsets[0]:offsets[-1]], 0.0))
        keep = (bins >= 0) & (bins < self.n_bins)
        row, bins, weight = row[keep], bins[keep], weight[keep]
        dense = np.bincount(row * self.n_bins + bins, weights=weight, minlength=n * self.n_bins)
        emb = dense.reshape(n, self.n_bins).astype(np.float32) @ self._matrix
        n_in_range = np.bincount(row, minlength=n)
        quality = (1.0 - np.exp(-n_in_range / self.quality_scale)).astype(np.float32)
        return _l2_normalise(emb), quality

    def embed_spectra(self, batch: pa.RecordBatch, *, batch_size: int = 1024, peaks: Peaks | None = None
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Return (L2-normalised embeddings ``[n, dim]``, quality ``[n]``) for a spectrum batch (its peaks
        ``peaks`` when unpacked already)."""
        peaks = peaks if peaks is not None else Peaks.from_arrow(batch)
        embs: list[npt.NDArray[np.float32]] = []
        quals: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(peaks), batch_size):
            part = peaks.slice(start, min(start + batch_size, len(peaks)))
            emb, quality = self.embed_peaks(part.offsets, part.mz, part.intensity)
            embs.append(emb)
            quals.append(quality)
        if not embs:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate(embs), np.concatenate(quals)


@dataclass(frozen=True)
class FixedMoleculeEmbedder:
    """Morgan count fingerprint (radius 2) -> sqrt -> fixed random projection -> L2 norm.

    Satisfies ``MoleculeEmbedder``; not aligned with :class:`FixedSpectrumEmbedder`.
    """

    dim: int = 128
    radius: int = 2
    n_bits: int = 2048
    seed: int = 1

    @property
    def encoder_hash(self) -> str:
        return _hash("fixed-molecule-v1", self.dim, self.radius, self.n_bits, self.seed)

    @cached_property
    def _matrix(self) -> npt.NDArray[np.float32]:
        return _projection(self.n_bits, self.dim, self.seed)

    def embed_smiles(self, smiles: Sequence[str], *, batch_size: int = 1024) -> npt.NDArray[np.float32]:
        """Return L2-normalised embeddings ``[n, dim]``; an unparsable SMILES raises InvalidMoleculeError."""
        from rdkit.Chem import rdFingerprintGenerator

        gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)
        fps = np.zeros((len(smiles), self.n_bits), dtype=np.float32)
        for i, smi in enumerate(smiles):
            mol = parse_smiles(smi)
            if mol is None:
                raise InvalidMoleculeError("SMILES cannot be parsed", record=repr(smi), reason="invalid_smiles")
            fps[i] = gen.GetCountFingerprintAsNumPy(mol)
        return _l2_normalise(np.sqrt(fps) @ self._matrix)
