"""An opened repository for lookups: the table, its vector index, the model and the Tanimoto map, loaded once.

``engine lookup`` and ``engine serve`` both answer through :class:`RepositorySearcher`, so the command line
and the HTTP service give the same hits for the same query. Optionally a reference library (``--library``)
names the query's closest library spectra beside the repository hits.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from engine.core.errors import InvalidInputError
from engine.core.records import Spectrum
from engine.core.schema import spectra_to_batch
from engine.core.validate import validate_spectrum
from engine.io.stream import read_indexed_spectra
from engine.jobs.artifacts import open_library, open_library_and_model
from engine.models.tanimoto_map import load_tanimoto_map
from engine.queries.lookup import (
    LookupSettings,
    StoredVectors,
    hit_records,
    lookup_embeddings,
    lookup_spectra,
    lookup_structures,
    lookup_usis,
    stored_spectra,
    usi_dataset,
)

log = logging.getLogger(__name__)

#: Most peaks a query spectrum may have, and most spectra one request may carry.
MAX_PEAKS = 10_000
MAX_QUERIES = 100


def read_query_file(path: str | Path) -> pa.RecordBatch:
    """The spectra of a query file (any format the engine reads); a bad record raises InvalidInputError."""
    spectra = [s for _, s in read_indexed_spectra(path, on_invalid="error")]
    if not spectra:
        raise InvalidInputError(f"{path}: no spectra", reason="empty_input")
    if len(spectra) > MAX_QUERIES:
        raise InvalidInputError(f"{len(spectra)} query spectra; at most {MAX_QUERIES} per lookup", reason="too_many")
    return spectra_to_batch(spectra)


def read_query_text(text: str, *, suffix: str = ".mgf") -> pa.RecordBatch:
    """The spectra of MGF (or MSP, by ``suffix``) text, read through the same readers as files."""
    with tempfile.TemporaryDirectory(prefix="engine-query-") as tmp:
        path = Path(tmp) / f"query{suffix}"
        path.write_text(text)
        return read_query_file(path)


def query_spectrum(peaks: Sequence[Sequence[float]], *, precursor_mz: float, ion_mode: str | None,
                   spectrum_id: str = "query") -> pa.RecordBatch:
    """One validated query spectrum from ``[[mz, intensity], ...]``; bad values raise InvalidInputError."""
    if len(peaks) > MAX_PEAKS:
        raise InvalidInputError(f"{len(peaks)} peaks; at most {MAX_PEAKS}", reason="too_many_peaks")
    arr = np.asarray(peaks, dtype=np.float64).reshape(-1, 2) if len(peaks) else np.zeros((0, 2))
    spectrum = Spectrum(spectrum_id=spectrum_id, mz=arr[:, 0].copy(), intensity=arr[:, 1].astype(np.float32),
                        precursor_mz=precursor_mz, ion_mode=ion_mode)  # type: ignore[arg-type]
    return spectra_to_batch([validate_spectrum(spectrum, path="request", record=spectrum_id)])


class RepositorySearcher:
    """Everything a lookup needs, opened once (see the module docstring)."""

    def __init__(self, repo: str | Path, *, model_path: str | Path | None = None, library: str | Path | None = None,
                 fixed: bool = False) -> None:
        self.repo = Path(repo)
        self.library, self.model = open_library_and_model(repo, model_path, fixed=fixed)
        self.index = self.library.index(use_gpu=False)
        for ordinal in range(len(self.index.manifest.partitions)):  # load (memory-map) every partition now
            self.index.partition(ordinal)
        self.stored = StoredVectors(self.index)
        self.tanimoto = load_tanimoto_map(self.model.encoder_hash)
        if self.tanimoto is None:
            log.info("no Tanimoto map for encoder %s: predicted Tanimoto is the clipped cosine",
                     self.model.encoder_hash)
        self.reference = None
        if library is not None:
            self.reference = open_library(library)
            self.reference.table.check_encoder(dim=self.model.dim, encoder_hash=self.model.encoder_hash)
            self.reference_index = self.reference.index(use_gpu=False)

    @property
    def can_search_structures(self) -> bool:
        return hasattr(self.model, "embed_smiles")

    def spectra(self, batch: pa.RecordBatch | pa.Table, settings: LookupSettings) -> pa.Table:
        return lookup_spectra(batch, self.index, self.model, settings, self.tanimoto)

    def spectra_with_embeddings(self, batch: pa.RecordBatch | pa.Table, settings: LookupSettings
                                ) -> tuple[pa.Table, np.ndarray]:
        """Hits and the query embeddings (for the reference-library matches)."""
        emb, _q = self.model.embed_spectra(batch)
        hits = lookup_embeddings(self.index, emb, batch.column("precursor_mz").to_pylist(),
                                 batch.column("ion_mode").to_pylist(),
                                 [str(s) for s in batch.column("spectrum_id").to_pylist()], settings, self.tanimoto)
        return hits, emb

    def usis(self, usis: Sequence[str], settings: LookupSettings) -> pa.Table:
        return lookup_usis(usis, self.stored, settings, self.tanimoto)

    def structures(self, smiles: Sequence[str], settings: LookupSettings) -> pa.Table:
        return lookup_structures(smiles, self.index, self.model, settings, self.tanimoto)

    def spectrum(self, usi: str) -> dict[str, Any]:
        """Peaks and precursor of a repository spectrum (UnknownSpectrumError when absent)."""
        row = stored_spectra(self.library.table, [usi], ["precursor_mz", "ion_mode", "charge", "mz", "intensity",
                                                         "source_file", "scan"]).to_pylist()[0]
        return {"usi": usi, "dataset": usi_dataset(usi), "precursor_mz": row["precursor_mz"],
                "ion_mode": row["ion_mode"], "charge": row["charge"], "source_file": row["source_file"],
                "scan": row["scan"], "peaks": [[float(m), float(i)] for m, i in zip(row["mz"], row["intensity"],
                                                                                      strict=True)]}

    def library_matches(self, batch: pa.RecordBatch | pa.Table, emb: np.ndarray, *, top_k: int = 3
                        ) -> list[dict[str, Any]]:
        """The reference library's nearest spectra (identity window) to each query, with names and structures."""
        if self.reference is None:
            return []
        hits = lookup_embeddings(self.reference_index, emb, batch.column("precursor_mz").to_pylist(),
                                 batch.column("ion_mode").to_pylist(),
                                 [str(s) for s in batch.column("spectrum_id").to_pylist()],
                                 LookupSettings(mode="identity", top_k=top_k), self.tanimoto)
        names = self.reference.table.take_keys([str(u) for u in hits.column("usi").to_pylist()],
                                               ["spectrum_id", "name", "smiles", "inchikey", "adduct"])
        by_id = {r["spectrum_id"]: r for r in names.to_pylist()}
        out = []
        for row in hit_records(hits):
            meta = by_id.get(row["usi"], {})
            out.append({"query_id": row["query_id"], "rank": row["rank"], "library_id": row["usi"],
                        "name": meta.get("name"), "smiles": meta.get("smiles"), "inchikey": meta.get("inchikey"),
                        "adduct": meta.get("adduct"), "precursor_mz": row["precursor_mz"],
                        "cosine": row["cosine"], "predicted_tanimoto": row["predicted_tanimoto"]})
        return out

    def info(self) -> dict[str, Any]:
        man = self.index.manifest
        return {"repo": str(self.repo), "spectra": man.n_rows, "partitions": len(man.partitions),
                "encoder_hash": self.model.encoder_hash, "structures": self.can_search_structures,
                "library": str(self.reference.path) if self.reference is not None else None}
