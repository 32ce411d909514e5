"""Library evidence for candidate ranking: a candidate whose own reference spectra do not match the query is
demoted.

A spectral library holds reference spectra of known structures. When a candidate structure has reference
spectra in the query's ion mode and none of them is close to the query in the embedding space, the query is
unlikely to be that structure (had it been, its library match would have been found). Candidate ranking
then lowers the candidate's score by ``weight * (threshold - best cosine)``; candidates without reference
spectra, and those whose reference spectra match (cosine >= ``threshold``), keep the model's score.

The default ``threshold`` and ``weight`` were chosen on the MassBank validation split (a small grid) with
the train and val spectra as the library, the query's own structure hidden, and checked for the case where
the true structure has reference spectra of its own (``benchmarks/model/``, the `+ library evidence` rows):
same-formula isomers have similar spectra, so only a strict threshold separates "this is not that
compound" from "a related compound", and a small weight keeps a true structure whose reference was
recorded under other conditions from being pushed down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import IncompatibleArtifactError

#: Embedding cosine at or above which a reference spectrum counts as matching the query.
DEFAULT_THRESHOLD = 0.95
#: Score lowered per unit of cosine below the threshold.
DEFAULT_WEIGHT = 0.5


def structure_key(inchikey: str | None) -> str | None:
    """First InChIKey block (the 2D skeleton), the key structures are matched on; None when missing."""
    return inchikey.split("-", 1)[0] if inchikey else None


@dataclass(frozen=True)
class LibraryEvidence:
    """Reference-spectrum embeddings grouped by (structure key, ion mode)."""

    embeddings: npt.NDArray[np.float32]
    groups: dict[tuple[str, str], npt.NDArray[np.int64]]
    encoder_hash: str
    threshold: float = DEFAULT_THRESHOLD
    weight: float = DEFAULT_WEIGHT

    @classmethod
    def from_arrays(cls, inchikeys: Sequence[str | None], ion_modes: Sequence[str | None],
                    embeddings: npt.ArrayLike, *, encoder_hash: str, threshold: float = DEFAULT_THRESHOLD,
                    weight: float = DEFAULT_WEIGHT) -> LibraryEvidence:
        """Evidence from parallel arrays (rows without an InChIKey or ion mode are left out)."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(inchikeys) or len(ion_modes) != len(inchikeys):
            raise ValueError("inchikeys, ion_modes and embeddings must have one row per reference spectrum")
        rows: dict[tuple[str, str], list[int]] = {}
        for i, (key, mode) in enumerate(zip(inchikeys, ion_modes, strict=True)):
            k = structure_key(key)
            if k and mode:
                rows.setdefault((k, mode), []).append(i)
        groups = {k: np.asarray(v, dtype=np.int64) for k, v in rows.items()}
        return cls(emb, groups, encoder_hash, threshold, weight)

    @classmethod
    def from_library(cls, library: Any, *, encoder_hash: str, dim: int, threshold: float = DEFAULT_THRESHOLD,
                     weight: float = DEFAULT_WEIGHT) -> LibraryEvidence:
        """Evidence from an opened spectrum :class:`~indexes.library.Library` embedded by the ranking model
        (another model's library is refused)."""
        if library.layout.ion_mode_column is None:
            raise IncompatibleArtifactError(f"{library.path}: a molecule database, not a spectrum library")
        library.table.check_encoder(dim=dim, encoder_hash=encoder_hash)
        names = library.table.schema.names
        if "inchikey" not in names:
            raise IncompatibleArtifactError(f"{library.path}: the library has no inchikey column")
        batches = list(library.table.scan(["inchikey", "ion_mode", "embedding"], where="inchikey IS NOT NULL"))
        if not batches:
            return cls(np.zeros((0, dim), np.float32), {}, encoder_hash, threshold, weight)
        table = pa.Table.from_batches(batches)
        flat = pc.list_flatten(table.column("embedding")).to_numpy()
        return cls.from_arrays(table.column("inchikey").to_pylist(), table.column("ion_mode").to_pylist(),
                               np.asarray(flat, np.float32).reshape(table.num_rows, dim),
                               encoder_hash=encoder_hash, threshold=threshold, weight=weight)

    def __len__(self) -> int:
        return int(sum(g.shape[0] for g in self.groups.values()))

    def similarity(self, query_embeddings: npt.NDArray[np.float32], query_modes: Sequence[str | None],
                   query_index: npt.NDArray[np.int64], candidate_keys: Sequence[str | None]
                   ) -> npt.NDArray[np.float64]:
        """Best cosine between each (query, candidate) pair's query and the candidate's reference spectra in
        the query's ion mode; NaN where the candidate has none."""
        out = np.full(query_index.shape[0], np.nan)
        for j, (qi, key) in enumerate(zip(query_index.tolist(), candidate_keys, strict=True)):
            k, mode = structure_key(key), query_modes[qi]
            rows = self.groups.get((k, mode)) if k and mode else None
            if rows is not None:
                out[j] = float((self.embeddings[rows] @ query_embeddings[qi]).max())
        return out

    def adjust(self, score: npt.NDArray[np.float64], similarity: npt.NDArray[np.float64]
               ) -> npt.NDArray[np.float64]:
        """``score`` lowered where the candidate's reference spectra do not match (similarity < threshold)."""
        gap = np.clip(self.threshold - np.nan_to_num(similarity, nan=self.threshold), 0.0, None)
        return score - self.weight * gap
