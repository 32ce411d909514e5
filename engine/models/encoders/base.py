"""The interface every spectrum / molecule encoder offers to the vector store and the queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.peaks import Peaks


@runtime_checkable
class SpectrumEmbedder(Protocol):
    """Embeds record batches of the spectrum schema (:data:`engine.core.schema.SPECTRUM_SCHEMA`)."""

    @property
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    def encoder_hash(self) -> str:
        """Content hash of weights + config + preprocessing; indexes record it in their manifest."""

    def embed_spectra(self, batch: pa.RecordBatch, *, batch_size: int = 1024, peaks: Peaks | None = None
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Return (L2-normalised float32 embeddings ``[n, dim]``, quality ``[n]`` in 0..1, higher=better).

        ``peaks`` are the batch's peaks when the caller unpacked them already (:meth:`Peaks.from_arrow`)."""


@runtime_checkable
class MoleculeEmbedder(Protocol):
    """Embeds molecules given as SMILES into the same space as the spectra."""

    @property
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    def encoder_hash(self) -> str:
        """Content hash, as for spectra."""

    def embed_smiles(self, smiles: Sequence[str], *, batch_size: int = 1024
                     ) -> npt.NDArray[np.float32]:
        """Return L2-normalised float32 embeddings ``[n, dim]``; invalid SMILES raise InvalidMoleculeError."""
