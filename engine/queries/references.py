"""Library rows behind search hits: annotation columns and peaks, looked up by ``row_id``.

Re-scoring needs the peaks of every candidate. For libraries up to ``preload_max_rows`` rows the
annotation columns and peaks are read once (one scan, about 1 s per 100k spectra) and kept in flat
arrays sorted by ``row_id``, so a batch lookup is a ``searchsorted``; larger libraries are read per batch
of hits from LanceDB (``row_id IN (...)``, served by the scalar index).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.core.fsutil import atomic_path
from engine.core.peaks import Peaks
from engine.models.rdkit_util import packed_fingerprint
from engine.queries.similarity import EntropyPeaks, prepare_entropy, top_peaks

#: Annotation columns carried to the results (those present in the table).
META_COLUMNS = ("spectrum_id", "name", "smiles", "inchikey", "formula", "adduct", "precursor_mz", "ion_mode",
                "quality", "is_decoy")
PRELOAD_MAX_ROWS = 2_000_000
#: Re-scoring uses the most intense peaks only, with square-root intensities (see :meth:`References.scoring_peaks`).
SCORING_MAX_PEAKS = 100
#: Structure fingerprints for analogue consensus: RDKit fingerprint, 2048 bits (as the Tanimoto of the benchmarks).
FINGERPRINT_BITS = 2048
#: File in a library directory caching the rows' packed structure fingerprints (written on first use when the
#: directory is writable; ignored unless its digest matches the library's row ids and SMILES).
FINGERPRINT_CACHE = "structure_fingerprints.npz"


class References:
    """Annotation columns and peaks of library rows, by ``row_id``.

    ``source`` is an opened :class:`indexes.library.Library` or, for tests and benchmarks, a table with
    ``row_id``, ``mz``, ``intensity`` and the annotation columns.
    """

    def __init__(self, source: Any, *, preload: bool | None = None, entropy_tolerance_da: float = 0.02) -> None:
        self.entropy_tolerance_da = entropy_tolerance_da
        self._library = None
        self._rows: npt.NDArray[np.int64] | None = None
        self._meta: pa.Table | None = None
        self._peaks: Peaks | None = None
        self._fp_cache: dict[str, npt.NDArray[np.uint8]] = {}
        self._row_fps: npt.NDArray[np.uint8] | None = None
        self._decoy_rows: npt.NDArray[np.int64] | None = None
        #: whether the library holds decoy spectra (target-decoy q-values); ``decoy_note`` says why not
        self.has_decoys = False
        self.decoy_note: str | None = "the library holds no decoy spectra: no q-values"
        if isinstance(source, pa.Table):
            self._load(source)
            if "is_decoy" in source.column_names and bool(pc.any(source.column("is_decoy")).as_py()):
                self.has_decoys, self.decoy_note = True, None
            return
        self._library = source
        note = getattr(source, "decoy_note", None)
        if callable(note):
            self.decoy_note = note()
            self.has_decoys = self.decoy_note is None
        n = source.table.count_rows()
        if preload or (preload is None and n <= PRELOAD_MAX_ROWS):
            names = source.table.schema.names
            cols = ["row_id", "mz", "intensity", *(c for c in META_COLUMNS if c in names)]
            batches = list(source.table.scan(cols))
            self._load(pa.Table.from_batches(batches) if batches
                       else source.table.schema.empty_table().select(cols))

    def _load(self, table: pa.Table) -> None:
        order = np.argsort(table.column("row_id").to_numpy(), kind="stable")
        table = table.take(order)
        self._rows = table.column("row_id").to_numpy().astype(np.int64)
        self._peaks = Peaks.from_arrow(table)
        keep = [c for c in META_COLUMNS if c in table.column_names]
        self._meta = table.select(["row_id", *keep]).combine_chunks()

    @property
    def preloaded(self) -> bool:
        return self._rows is not None

    def _positions(self, row_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        assert self._rows is not None
        pos = np.searchsorted(self._rows, row_ids)
        pos = np.minimum(pos, max(self._rows.shape[0] - 1, 0))
        if self._rows.shape[0] == 0 or not np.array_equal(self._rows[pos], row_ids):
            raise KeyError("row ids not in the library table (index and table out of sync?)")
        return pos.astype(np.int64)

    def _fetch(self, row_ids: npt.NDArray[np.int64]) -> tuple[pa.Table, Peaks]:
        """Rows from LanceDB, in the order of ``row_ids``."""
        assert self._library is not None
        names = self._library.table.schema.names
        cols = ["row_id", "mz", "intensity", *(c for c in META_COLUMNS if c in names)]
        unique = np.unique(row_ids)
        found = self._library.table.take_row_ids(unique.tolist(), cols)
        ids = found.column("row_id").to_numpy()
        order = np.argsort(ids)
        pos = np.searchsorted(ids[order], row_ids)
        take = order[np.minimum(pos, max(len(order) - 1, 0))]
        if len(ids) == 0 or not np.array_equal(ids[take], row_ids):
            raise KeyError("row ids not in the library table (index and table out of sync?)")
        table = found.take(take)
        return table.select(["row_id", *(c for c in META_COLUMNS if c in cols)]), Peaks.from_arrow(table)

    def prepare(self) -> References:
        """Build the cached re-scoring forms (entropy-cleaned and capped sqrt peaks, structure fingerprints)
        now rather than on the first query (preloaded libraries only; a few seconds per 100k spectra)."""
        if self.preloaded:
            empty = np.zeros(0, dtype=np.int64)
            self.entropy_peaks(empty)
            self.scoring_peaks(empty)
            self.structure_fingerprints(empty)
        return self

    def structure_fingerprints(self, row_ids: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """Packed RDKit fingerprints (2048 bits, ``[n, 256]`` uint8) of the rows' structures; zeros where a
        row has no parsable SMILES. Computed once per distinct structure and cached."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:
            if self._row_fps is None:
                assert self._meta is not None and self._rows is not None
                smiles = self._smiles(self._meta)
                digest = _fingerprint_digest(self._rows, smiles)
                self._row_fps = self._cached_fingerprints(digest)
                if self._row_fps is None:
                    self._row_fps = self._fingerprints(smiles)
                    self._store_fingerprints(digest, self._row_fps)
            return self._row_fps[self._positions(ids)]
        return self._fingerprints(self._smiles(self.meta(ids)))

    def _cache_path(self) -> Path | None:
        path = getattr(self._library, "path", None)
        return Path(path) / FINGERPRINT_CACHE if path is not None else None

    def _cached_fingerprints(self, digest: str) -> npt.NDArray[np.uint8] | None:
        """The library directory's stored fingerprints when they were computed for these rows and SMILES."""
        path = self._cache_path()
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as data:
                if str(data["digest"]) != digest:
                    return None
                fps = np.asarray(data["fingerprints"], dtype=np.uint8)
        except (OSError, ValueError, KeyError):
            return None
        assert self._rows is not None
        return fps if fps.shape == (self._rows.shape[0], FINGERPRINT_BITS // 8) else None

    def _store_fingerprints(self, digest: str, fps: npt.NDArray[np.uint8]) -> None:
        """Write the fingerprints beside the library (atomically); a read-only directory is left alone."""
        path = self._cache_path()
        if path is None or not os.access(path.parent, os.W_OK):
            return
        with contextlib.suppress(OSError), atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, digest=np.array(digest), fingerprints=fps)

    @staticmethod
    def _smiles(meta: pa.Table) -> list[str]:
        if "smiles" not in meta.column_names:
            return [""] * meta.num_rows
        return [s or "" for s in meta.column("smiles").to_pylist()]

    def _fingerprints(self, smiles: list[str]) -> npt.NDArray[np.uint8]:
        uniq, inverse = np.unique(np.asarray(smiles, dtype=object).astype(str), return_inverse=True)
        missing = [s for s in uniq.tolist() if s not in self._fp_cache]
        if missing:
            for smi in missing:
                self._fp_cache[smi] = packed_fingerprint(smi, FINGERPRINT_BITS)
        table = np.stack([self._fp_cache[s] for s in uniq.tolist()]) if len(uniq) else \
            np.zeros((0, FINGERPRINT_BITS // 8), np.uint8)
        return table[inverse]

    def precursor_mz(self, row_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Precursor m/z of ``row_ids`` (NaN where missing)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:
            assert self._peaks is not None
            return self._peaks.precursor_mz[self._positions(ids)]
        return self._fetch(ids)[1].precursor_mz

    def meta(self, row_ids: npt.ArrayLike) -> pa.Table:
        """Annotation columns of ``row_ids`` (in that order)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:
            assert self._meta is not None
            return self._meta.take(self._positions(ids))
        return self._fetch(ids)[0]

    def is_decoy(self, row_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each of ``row_ids`` is a decoy spectrum (all False in a library without decoys)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if not self.has_decoys:
            return np.zeros(ids.shape[0], dtype=bool)
        col = self.meta(ids).column("is_decoy").fill_null(pa.scalar(False))
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=bool)

    def decoy_rows(self) -> npt.NDArray[np.int64]:
        """Row ids of every decoy spectrum, sorted (empty without decoys): the rows a targets-only search
        leaves out (``exclude_rows`` of :func:`indexes.search.search`). Read once."""
        if self._decoy_rows is None:
            if not self.has_decoys:
                self._decoy_rows = np.zeros(0, dtype=np.int64)
            elif self.preloaded:
                assert self._rows is not None
                self._decoy_rows = self._rows[self.is_decoy(self._rows)]
            else:
                assert self._library is not None
                parts = [b.column(0).to_numpy() for b in self._library.table.scan(["row_id"], where="is_decoy = true")]
                self._decoy_rows = np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)
        return self._decoy_rows

    def peaks(self, row_ids: npt.ArrayLike) -> Peaks:
        """Raw peaks of ``row_ids`` (in that order)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:
            assert self._peaks is not None
            return self._peaks.subset(self._positions(ids))
        return self._fetch(ids)[1]

    def scoring_peaks(self, row_ids: npt.ArrayLike) -> Peaks:
        """The ``SCORING_MAX_PEAKS`` most intense peaks of ``row_ids``, square-root intensities (the input of
        the greedy cosines in re-scoring; prepared once for a preloaded library)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:   # top_peaks keeps its result with the library's peaks: made once
            assert self._peaks is not None
            return top_peaks(self._peaks, SCORING_MAX_PEAKS, sqrt=True).subset(self._positions(ids))
        return top_peaks(self._fetch(ids)[1], SCORING_MAX_PEAKS, sqrt=True)

    def entropy_peaks(self, row_ids: npt.ArrayLike) -> EntropyPeaks:
        """Cleaned, entropy-weighted peaks of ``row_ids`` (prepared once for a preloaded library)."""
        ids = np.asarray(row_ids, dtype=np.int64)
        if self.preloaded:   # prepare_entropy keeps its result with the library's peaks: made once
            assert self._peaks is not None
            prepared = prepare_entropy(self._peaks, tolerance_da=self.entropy_tolerance_da)
            return EntropyPeaks(prepared.peaks.subset(self._positions(ids)), prepared.tolerance_da)
        return prepare_entropy(self._fetch(ids)[1], tolerance_da=self.entropy_tolerance_da)


def _fingerprint_digest(rows: npt.NDArray[np.int64], smiles: list[str]) -> str:
    """Digest of the row ids and their SMILES (and the fingerprint definition) the cached fingerprints belong to."""
    h = hashlib.sha256(f"rdkit-{FINGERPRINT_BITS}\0".encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    h.update("\0".join(smiles).encode())
    return h.hexdigest()
