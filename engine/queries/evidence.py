"""Library evidence for candidate ranking: a candidate whose own reference spectra do not match the query is
demoted.

A spectral library holds reference spectra of known structures. When a candidate structure has reference
spectra in the query's ion mode and none of them is close to the query, the query is unlikely to be that
structure (had it been, its library match would have been found). Candidate ranking then lowers the
candidate's score by ``weight * (threshold - best similarity)``; candidates without reference spectra, and
those whose reference spectra match (similarity >= ``threshold``), keep their score.

"Close" is the spectral entropy similarity of the peaks when the evidence holds the reference peaks (the
default from a library: it tells a compound's own spectra from a same-formula isomer's far better than the
embedding does, ROC AUC 0.96 against 0.90 on the calibration fold of the train split), else the embedding
cosine. Threshold and weight per measure were chosen on that calibration fold (train structures the model
never trained on, the training fold as the library, val never read), for both the case where the true
structure has no reference spectra and the case where its other spectra stand as references: same-formula
isomers have similar spectra, so only a strict threshold separates "this is not that compound" from "a
related compound", and a moderate weight keeps a true structure whose reference was recorded under other
conditions from being pushed far down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.core.errors import IncompatibleArtifactError
from engine.core.peaks import Peaks
from engine.queries.similarity import EntropyPeaks, entropy_similarity, prepare_entropy

#: Embedding cosine at or above which a reference spectrum counts as matching the query.
DEFAULT_THRESHOLD = 0.95
#: Score lowered per unit of cosine below the threshold.
DEFAULT_WEIGHT = 0.5
#: The same for the spectral entropy similarity (used when the evidence holds reference peaks).
ENTROPY_THRESHOLD = 0.6
ENTROPY_WEIGHT = 2.0
#: Peak tolerance (Da) of the entropy similarity (the searches' default; the threshold was chosen with it).
ENTROPY_TOLERANCE_DA = 0.02


def structure_key(inchikey: str | None) -> str | None:
    """First InChIKey block (the 2D skeleton), the key structures are matched on; None when missing."""
    return inchikey.split("-", 1)[0] if inchikey else None


#: Entropy peaks of reference rows (positions in the evidence's embedding rows), in that order.
ReferencePeaks = Callable[[npt.NDArray[np.int64]], EntropyPeaks]


@dataclass(frozen=True)
class _PreparedPeaks:
    """:data:`ReferencePeaks` over spectra prepared once, one per embedding row."""

    prepared: EntropyPeaks

    def __call__(self, rows: npt.NDArray[np.int64]) -> EntropyPeaks:
        return EntropyPeaks(self.prepared.peaks.subset(rows), self.prepared.tolerance_da)


@dataclass(frozen=True)
class _LibraryPeaks:
    """:data:`ReferencePeaks` read through a library's :class:`~engine.queries.references.References`
    (peaks held once for a library it preloads, fetched per batch for a larger one)."""

    references: Any
    row_ids: npt.NDArray[np.int64]

    def __call__(self, rows: npt.NDArray[np.int64]) -> EntropyPeaks:
        return cast(EntropyPeaks, self.references.entropy_peaks(self.row_ids[rows]))


@dataclass(frozen=True)
class LibraryEvidence:
    """Reference spectra grouped by (structure key, ion mode): their embeddings and, when
    ``reference_peaks`` gives them (entropy peaks by embedding row), their peaks; the evidence then
    compares peaks (``measure`` "entropy") prepared with ``tolerance_da``, else embeddings."""

    embeddings: npt.NDArray[np.float32]
    groups: dict[tuple[str, str], npt.NDArray[np.int64]]
    encoder_hash: str
    threshold: float = DEFAULT_THRESHOLD
    weight: float = DEFAULT_WEIGHT
    reference_peaks: ReferencePeaks | None = None
    tolerance_da: float = ENTROPY_TOLERANCE_DA

    @property
    def measure(self) -> str:
        """"entropy" (reference peaks held) or "embedding"."""
        return "embedding" if self.reference_peaks is None else "entropy"

    @classmethod
    def from_arrays(cls, inchikeys: Sequence[str | None], ion_modes: Sequence[str | None],
                    embeddings: npt.ArrayLike, *, encoder_hash: str, peaks: Peaks | None = None,
                    threshold: float | None = None, weight: float | None = None) -> LibraryEvidence:
        """Evidence from parallel arrays (rows without an InChIKey or ion mode are left out); with ``peaks``
        (one spectrum per row) it compares peaks. Threshold and weight default to those of the measure."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if peaks is not None and len(peaks) != emb.shape[0]:
            raise ValueError("peaks must have one spectrum per reference row")
        return cls._build(inchikeys, ion_modes, emb, encoder_hash,
                          _PreparedPeaks(prepare_entropy(peaks)) if peaks is not None else None, threshold, weight)

    @classmethod
    def _build(cls, inchikeys: Sequence[str | None], ion_modes: Sequence[str | None],
               emb: npt.NDArray[np.float32], encoder_hash: str, reference_peaks: ReferencePeaks | None,
               threshold: float | None, weight: float | None) -> LibraryEvidence:
        if emb.ndim != 2 or emb.shape[0] != len(inchikeys) or len(ion_modes) != len(inchikeys):
            raise ValueError("inchikeys, ion_modes and embeddings must have one row per reference spectrum")
        rows: dict[tuple[str, str], list[int]] = {}
        for i, (key, mode) in enumerate(zip(inchikeys, ion_modes, strict=True)):
            k = structure_key(key)
            if k and mode:
                rows.setdefault((k, mode), []).append(i)
        groups = {k: np.asarray(v, dtype=np.int64) for k, v in rows.items()}
        entropy = reference_peaks is not None
        return cls(emb, groups, encoder_hash,
                   threshold if threshold is not None else (ENTROPY_THRESHOLD if entropy else DEFAULT_THRESHOLD),
                   weight if weight is not None else (ENTROPY_WEIGHT if entropy else DEFAULT_WEIGHT),
                   reference_peaks)

    @classmethod
    def from_library(cls, library: Any, *, encoder_hash: str, dim: int, compare_peaks: bool = True,
                     references: Any = None, threshold: float | None = None, weight: float | None = None
                     ) -> LibraryEvidence:
        """Evidence from an opened spectrum :class:`~indexes.library.Library` embedded by the ranking model
        (another model's library is refused); it compares peaks unless ``compare_peaks`` is False, read
        through ``references`` (the library's :class:`~engine.queries.references.References`, shared with
        the searches when given; opened here otherwise)."""
        if library.layout.ion_mode_column is None:
            raise IncompatibleArtifactError(f"{library.path}: a molecule database, not a spectrum library")
        library.table.check_encoder(dim=dim, encoder_hash=encoder_hash)
        names = library.table.schema.names
        if "inchikey" not in names:
            raise IncompatibleArtifactError(f"{library.path}: the library has no inchikey column")
        with_peaks = compare_peaks and {"row_id", "mz", "intensity"} <= set(names)
        columns = ["inchikey", "ion_mode", "embedding", *(["row_id"] if with_peaks else [])]
        batches = list(library.table.scan(columns, where="inchikey IS NOT NULL"))
        table = pa.Table.from_batches(batches) if batches else None
        n = table.num_rows if table is not None else 0
        flat = pc.list_flatten(table.column("embedding")).to_numpy() if table is not None else np.zeros(0)
        reference_peaks = None
        if with_peaks:
            from engine.queries.references import References

            refs = references if references is not None else References(library)
            row_ids = (table.column("row_id").to_numpy().astype(np.int64) if table is not None
                       else np.zeros(0, np.int64))
            reference_peaks = _LibraryPeaks(refs, row_ids)
        return cls._build(table.column("inchikey").to_pylist() if table is not None else [],
                          table.column("ion_mode").to_pylist() if table is not None else [],
                          np.asarray(flat, np.float32).reshape(n, dim), encoder_hash, reference_peaks,
                          threshold, weight)

    def __len__(self) -> int:
        return int(sum(g.shape[0] for g in self.groups.values()))

    def query_peaks(self, peaks: Peaks) -> EntropyPeaks | None:
        """The query spectra prepared as :meth:`similarity` needs them (None for embeddings); the same
        preparation as the searches', so a chunk's peaks are prepared once."""
        if self.reference_peaks is None:
            return None
        return prepare_entropy(peaks, tolerance_da=self.tolerance_da)

    def similarity(self, query_embeddings: npt.NDArray[np.float32], query_modes: Sequence[str | None],
                   query_index: npt.NDArray[np.int64], candidate_keys: Sequence[str | None],
                   query_peaks: EntropyPeaks | None = None) -> npt.NDArray[np.float64]:
        """Best similarity between each (query, candidate) pair's query and the candidate's reference spectra
        in the query's ion mode; NaN where the candidate has none. Peaks are compared when the evidence
        holds reference peaks (``query_peaks``, from :meth:`query_peaks`, is then required)."""
        if self.reference_peaks is not None and query_peaks is None:
            raise ValueError("this evidence compares peaks: give query_peaks (LibraryEvidence.query_peaks)")
        out = np.full(query_index.shape[0], np.nan)
        pair_rows: list[npt.NDArray[np.int64]] = []
        pair_of: list[int] = []
        for j, (qi, key) in enumerate(zip(query_index.tolist(), candidate_keys, strict=True)):
            k, mode = structure_key(key), query_modes[qi]
            rows = self.groups.get((k, mode)) if k and mode else None
            if rows is not None:
                pair_rows.append(rows)
                pair_of.append(j)
        if not pair_of:
            return out
        counts = np.fromiter((r.shape[0] for r in pair_rows), np.int64, len(pair_rows))
        refs = np.concatenate(pair_rows)
        owner = np.repeat(np.asarray(pair_of, np.int64), counts)
        queries = query_index[owner]
        if self.reference_peaks is not None:
            unique, position = np.unique(refs, return_inverse=True)
            sims = entropy_similarity(query_peaks, self.reference_peaks(unique), queries,  # type: ignore[arg-type]
                                      position)
        else:
            sims = np.einsum("ij,ij->i", self.embeddings[refs].astype(np.float64),
                             query_embeddings[queries].astype(np.float64))
        best = np.full(query_index.shape[0], -np.inf)
        np.maximum.at(best, owner, sims)
        out[pair_of] = best[pair_of]
        return out

    def adjust(self, score: npt.NDArray[np.float64], similarity: npt.NDArray[np.float64]
               ) -> npt.NDArray[np.float64]:
        """``score`` lowered where the candidate's reference spectra do not match (similarity < threshold)."""
        gap = np.clip(self.threshold - np.nan_to_num(similarity, nan=self.threshold), 0.0, None)
        return score - self.weight * gap
