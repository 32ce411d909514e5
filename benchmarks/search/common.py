"""Shared plumbing of the search benchmark and the calibration fit: embeddings, in-memory libraries.

A benchmark library is the product's vector index (:func:`indexes.vector_index.build_vector_index`,
default size rule) over the model's embeddings, with :class:`engine.queries.references.References`
built from the same Arrow table; ``row_id`` is the row's position in the spectra table. Only the LanceDB
table is skipped (it adds nothing to search, and building it for 90k spectra costs minutes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.queries.references import References
from indexes.search import search
from indexes.vector_index import VectorIndex, build_vector_index


class IndexLibrary:
    """A bare vector index with the two methods the searches use (``search`` and ``index``)."""

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    def index(self) -> VectorIndex:
        return self._index

    def search(self, queries: npt.NDArray[np.float32], **kwargs: Any) -> pa.Table:
        """:func:`indexes.search.search` on the index."""
        return search(self._index, queries, **kwargs)


def embed(model: Any, table: pa.Table, *, batch_size: int = 4096) -> tuple[npt.NDArray[np.float32],
                                                                           npt.NDArray[np.float32], float]:
    """Embeddings, qualities and seconds for every row of a spectra table."""
    start = time.perf_counter()
    embs, quals = [], []
    for offset in range(0, table.num_rows, batch_size):
        e, q = model.embed_spectra(table.slice(offset, batch_size))
        embs.append(e)
        quals.append(q)
    return np.concatenate(embs), np.concatenate(quals), time.perf_counter() - start


def build_library(directory: Path, table: pa.Table, rows: npt.NDArray[np.int64], emb: npt.NDArray[np.float32],
                  quality: npt.NDArray[np.float32], *, encoder_hash: str) -> tuple[IndexLibrary, References, float]:
    """Index of ``rows`` of ``table`` (row_id = table position) and its References; build seconds."""
    start = time.perf_counter()
    rows = np.asarray(rows, dtype=np.int64)
    light = pa.table({"row_id": pa.array(rows), "key": table.column("spectrum_id").take(pa.array(rows)),
                      "mass": table.column("precursor_mz").take(pa.array(rows)).cast(pa.float64()),
                      "ion_mode": table.column("ion_mode").take(pa.array(rows)),
                      "quality": pa.array(quality[rows].astype(np.float32))})
    dim = emb.shape[1]

    def batches() -> Any:
        for s in range(0, rows.shape[0], 65_536):
            part = rows[s:s + 65_536]
            vec = pa.FixedSizeListArray.from_arrays(pa.array(emb[part].reshape(-1)), dim)
            yield pa.record_batch([pa.array(part), vec], names=["row_id", "embedding"])

    build_vector_index(directory, light, batches, dim=dim, encoder_hash=encoder_hash, table="spectra",
                       key_column="spectrum_id", mass_column="precursor_mz", table_rows=rows.shape[0])
    index = IndexLibrary(VectorIndex.open(directory))
    ref_table = table.take(pa.array(rows)).append_column("row_id", pa.array(rows))
    ref_table = ref_table.append_column("quality", pa.array(quality[rows].astype(np.float32)))
    refs = References(ref_table)
    return index, refs, time.perf_counter() - start


def calibration_fold(table: pa.Table) -> npt.NDArray[np.bool_]:
    """Train rows whose structure is in the model's calibration fold (held out of model training).

    Same rule as :func:`engine.models.training.data.build_data` with the default data settings: scaffold groups
    counted over the licensed train records, hashed into the fold with ``calibration_fraction``.
    """
    from engine.models.training.config import DataConfig
    from engine.models.training.data import _group_key, _in_calibration

    config = DataConfig()
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    licensed = np.asarray(pc.is_in(table.column("license"), pa.array(list(config.licenses)))
                          .to_numpy(zero_copy_only=False), dtype=bool)
    scaffold = table.column("murcko_scaffold").to_pylist()
    ik14 = table.column("inchikey14").to_pylist()
    pairs = {(s, k) for s, k, sp, ok in zip(scaffold, ik14, split, licensed, strict=True)
             if sp == "train" and ok and s}
    counts: dict[str, int] = {}
    for s, _ in pairs:
        counts[s] = counts.get(s, 0) + 1
    fold = np.zeros(table.num_rows, dtype=bool)
    for i in np.flatnonzero(split == "train"):
        fold[i] = _in_calibration(_group_key(scaffold[i], ik14[i], counts), config.calibration_fraction)
    return fold


def molecule_embeddings(model: Any, table: pa.Table, cache: Path | None
                        ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Molecule embeddings of the table's unique structures (zeros where RDKit fails) and each row's structure
    (cached as ``mol.npy`` in ``cache``)."""
    smiles = np.asarray(table.column("smiles").to_pylist(), dtype=object).astype(str)
    uniq, struct = np.unique(smiles, return_inverse=True)
    path = cache / "mol.npy" if cache is not None else None
    if path is not None and path.is_file():
        return np.load(path), struct
    found = model.embed_molecules(list(uniq), on_invalid="skip")
    mol = np.zeros((len(uniq), found.embeddings.shape[1]), dtype=np.float32)
    mol[found.valid] = found.embeddings
    if path is not None:
        np.save(path, mol)
    return mol, struct
