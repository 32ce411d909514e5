"""Repository lookups: where else does this spectrum, an analogue of it, or this structure occur?

A query is an embedding with a precursor m/z and an ion mode: a spectrum embedded by the model, a
spectrum already in the repository (its stored embedding, found by USI), or a structure put into the
spectrum space by the molecule encoder. Hits are the repository spectra nearest by cosine:

* ``identity``: spectra of the same compound, so only those whose precursor lies within
  ``precursor_tolerance_ppm`` of the query's (in the other ion mode, with ``cross_mode``, the query m/z
  shifted by two protons: ``[M+H]+`` <-> ``[M-H]-``);
* ``analogue``: structurally similar compounds at any precursor m/z (or within ``max_mass_difference`` Da).

Each hit carries its USI, dataset, precursor m/z, ion mode, the embedding cosine, the predicted Tanimoto
of its structure to the query's (:mod:`engine.models.tanimoto_map`, per mode pairing; ``clip(cosine, 0,
1)`` without a map for the model) and the mass difference (hit - query m/z). Hits are ranked by predicted
Tanimoto, so that hits of both ion modes compare. A structure has no ion mode: its hits are searched in
every mode, within the m/z windows of the given adducts (``identity`` without adducts: ``[M+H]+`` and
``[M-H]-``), and their predicted Tanimoto uses the same-mode map of the hit's mode (the molecule encoder
is trained to land where its spectra do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.adducts import parse_adduct
from engine.core.errors import EngineError, InvalidInputError, InvalidMoleculeError
from engine.core.records import Tolerance
from engine.models.rdkit_util import parse_smiles
from engine.models.tanimoto_map import TanimotoMap, mode_pairing, positive_mask
from engine.queries.hits import top_per_query
from indexes.search import search
from indexes.store import VectorTable
from indexes.vector_index import VectorIndex

MODES = ("identity", "analogue")
ION_MODES = ("positive", "negative")
#: Largest ``top_k`` a lookup accepts.
MAX_TOP_K = 1000
PROTON = 1.007276
#: Keys hashed at a time when a repository is opened for lookups by USI.
HASH_CHUNK_ROWS = 1 << 18

LOOKUP_SCHEMA = pa.schema([  # type: ignore[arg-type]
    pa.field("query_id", pa.string(), nullable=False), pa.field("rank", pa.int32(), nullable=False),
    pa.field("usi", pa.string(), nullable=False), pa.field("dataset", pa.string()),
    pa.field("precursor_mz", pa.float64()), pa.field("ion_mode", pa.string()),
    pa.field("cosine", pa.float32()), pa.field("predicted_tanimoto", pa.float32()),
    pa.field("mass_difference", pa.float64()),
])


class UnknownSpectrumError(EngineError, LookupError):
    """A USI that the repository does not hold."""


@dataclass(frozen=True)
class LookupSettings:
    """Knobs of a lookup (see the module docstring)."""

    mode: str = "analogue"
    top_k: int = 10
    cross_mode: bool = False
    precursor_tolerance_ppm: float = 20.0
    max_mass_difference: float | None = None
    adducts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, not {self.mode!r}", reason="invalid_mode")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be between 1 and {MAX_TOP_K}, not {self.top_k}",
                                    reason="invalid_top_k")
        if not 0 < self.precursor_tolerance_ppm <= 1e5:
            raise InvalidInputError("precursor_tolerance_ppm must be > 0 (and at most 1e5)", reason="invalid_tolerance")
        if self.max_mass_difference is not None and not 0 < self.max_mass_difference < 1e6:
            raise InvalidInputError("max_mass_difference must be > 0 Da", reason="invalid_tolerance")
        for name in self.adducts:
            try:
                parse_adduct(name)
            except ValueError:
                raise InvalidInputError(f"unknown adduct {name!r}", reason="unknown_adduct") from None


def usi_dataset(usi: str) -> str | None:
    """The dataset accession of a USI (``mzspec:MSV000084630:file:scan:1`` -> ``MSV000084630``)."""
    parts = usi.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "mzspec" else None


@dataclass
class _Found:
    query: npt.NDArray[np.int64]
    usi: list[str]
    mass: npt.NDArray[np.float64]
    cosine: npt.NDArray[np.float64]
    mode: str
    pairing: npt.NDArray[np.int8]
    reference: npt.NDArray[np.float64]


def _search_mode(index: VectorIndex, emb: npt.NDArray[np.float32], queries: npt.NDArray[np.int64], mode: str,
                 center: npt.NDArray[np.float64], window: Tolerance | None, k: int,
                 pairing: npt.NDArray[np.int8], reference: npt.NDArray[np.float64]) -> _Found | None:
    """Top-``k`` of ``emb[queries]`` among the spectra of ``mode`` (within ``center +- window`` when given);
    mass differences are taken against ``reference`` (per query)."""
    if queries.size == 0 or mode not in index.manifest.scheme.edges:
        return None
    kwargs: dict[str, Any] = {}
    if window is not None:
        kwargs = {"mass": center[queries], "tolerance": window}
    hits = search(index, emb[queries], top_k=k, ion_mode=mode, **kwargs)
    qi = hits.column("query_index").to_numpy().astype(np.int64)
    key = index.manifest.key_column
    mass = index.manifest.mass_column
    return _Found(query=queries[qi], usi=[str(u) for u in hits.column(key).to_pylist()],
                  mass=hits.column(mass).to_numpy().astype(np.float64),
                  cosine=hits.column("score").to_numpy().astype(np.float64), mode=mode,
                  pairing=pairing[queries][qi], reference=reference[queries][qi])


def _assemble(found: Sequence[_Found | None], query_ids: Sequence[str], k: int,
              tanimoto: TanimotoMap | None) -> pa.Table:
    parts = [f for f in found if f is not None and f.query.size]
    if not parts:
        return LOOKUP_SCHEMA.empty_table()
    qi = np.concatenate([f.query for f in parts])
    cos = np.concatenate([f.cosine for f in parts])
    pairing = np.concatenate([f.pairing for f in parts])
    pred = (tanimoto.apply(cos, pairing) if tanimoto is not None
            else np.clip(cos, 0.0, 1.0)).astype(np.float64)
    keep, rank = top_per_query(qi, pred, k, tiebreak=cos)
    usi = np.asarray([u for f in parts for u in f.usi], dtype=object)[keep]
    mass = np.concatenate([f.mass for f in parts])[keep]
    reference = np.concatenate([f.reference for f in parts])[keep]
    modes = np.concatenate([np.full(f.query.shape[0], f.mode, dtype=object) for f in parts])[keep]
    return pa.table({
        "query_id": pa.array([query_ids[q] for q in qi[keep]], pa.string()),
        "rank": pa.array(rank, pa.int32()),
        "usi": pa.array(list(usi), pa.string()),
        "dataset": pa.array([usi_dataset(u) for u in usi], pa.string()),
        "precursor_mz": pa.array(mass, pa.float64()),
        "ion_mode": pa.array(list(modes), pa.string()),
        "cosine": pa.array(cos[keep].astype(np.float32)),
        "predicted_tanimoto": pa.array(pred[keep].astype(np.float32)),
        "mass_difference": pa.array(mass - reference, pa.float64(), from_pandas=True),
    }, schema=LOOKUP_SCHEMA)


def lookup_embeddings(index: VectorIndex, embeddings: npt.NDArray[np.float32],
                      precursor_mz: npt.NDArray[np.float64] | Sequence[float | None],
                      ion_mode: Sequence[str | None], query_ids: Sequence[str], settings: LookupSettings,
                      tanimoto: TanimotoMap | None = None) -> pa.Table:
    """Hits (rows of :data:`LOOKUP_SCHEMA`) of spectrum queries given as embeddings with m/z and ion mode."""
    emb = np.asarray(embeddings, dtype=np.float32)
    n = emb.shape[0]
    prec = np.asarray([np.nan if p is None else p for p in precursor_mz], dtype=np.float64).reshape(-1)
    q_pos = positive_mask(np.asarray(list(ion_mode), dtype=object), n)
    found = []
    for target in ION_MODES:
        t_pos = target == "positive"
        queries = np.arange(n) if settings.cross_mode else np.flatnonzero(q_pos == t_pos)
        # the same molecule in the other mode: [M+H]+ = [M-H]- + 2 protons
        shift = np.where(q_pos[queries] == t_pos, 0.0, 2 * PROTON if t_pos else -2 * PROTON)
        center = prec.copy()
        center[queries] = prec[queries] + shift
        window = None
        if settings.mode == "identity":
            window = Tolerance(settings.precursor_tolerance_ppm, "ppm")
        elif settings.max_mass_difference is not None:
            window = Tolerance(settings.max_mass_difference, "Da")
        pairing = mode_pairing(q_pos, np.full(n, t_pos))
        found.append(_search_mode(index, emb, queries, target, center, window, settings.top_k, pairing, prec))
    return _assemble(found, query_ids, settings.top_k, tanimoto)


def lookup_spectra(batch: pa.RecordBatch | pa.Table, index: VectorIndex, embedder: Any, settings: LookupSettings,
                   tanimoto: TanimotoMap | None = None) -> pa.Table:
    """Hits of query spectra (a batch of the spectrum schema), embedded here by ``embedder``."""
    if batch.num_rows == 0:
        return LOOKUP_SCHEMA.empty_table()
    emb, _quality = embedder.embed_spectra(batch)
    return lookup_embeddings(index, emb, batch.column("precursor_mz").to_pylist(),
                             batch.column("ion_mode").to_pylist(),
                             [str(s) for s in batch.column("spectrum_id").to_pylist()], settings, tanimoto)


def stored_spectra(table: VectorTable, usis: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """Rows of ``usis`` (in that order) from the repository table; unknown USIs raise UnknownSpectrumError."""
    cols = list(dict.fromkeys(["spectrum_id", *columns]))
    rows = table.take_keys(list(dict.fromkeys(usis)), cols)
    where = {str(k): i for i, k in enumerate(rows.column("spectrum_id").to_pylist())}
    missing = [u for u in usis if u not in where]
    if missing:
        raise UnknownSpectrumError(f"not in the repository: {', '.join(missing[:5])}"
                                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return rows.take(np.asarray([where[u] for u in usis], dtype=np.int64))


class StoredVectors:
    """USI -> stored vector, precursor m/z and ion mode, read from the index's memory-mapped partitions.

    A lookup by USI then needs no table query: the keys of every partition are hashed once (8-byte hash,
    partition and position per row, sorted by hash) and a USI is found by binary search and checked
    against the stored key.
    """

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        hashes, parts, positions = [], [], []
        for pid, entry in enumerate(index.manifest.partitions):
            if entry.n_rows == 0:
                continue
            column = index.partition(pid).meta.column("key")
            n = len(column)
            h = np.empty(n, dtype=np.int64)
            for start in range(0, n, HASH_CHUNK_ROWS):  # a chunk of Python strings at a time, not all of them
                keys = column.slice(start, HASH_CHUNK_ROWS).to_pylist()
                h[start:start + len(keys)] = np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))
            hashes.append(h)
            parts.append(np.full(n, pid, dtype=np.int32))
            positions.append(np.arange(n, dtype=np.int64))
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
        order = np.argsort(h, kind="stable")
        self._hash = h[order]
        self._part = np.concatenate(parts)[order] if parts else np.zeros(0, np.int32)
        self._pos = np.concatenate(positions)[order] if positions else np.zeros(0, np.int64)

    def locate(self, usi: str) -> tuple[int, int] | None:
        """(partition, position) of ``usi``, or None."""
        h = hash(usi)
        i = int(np.searchsorted(self._hash, h))
        while i < self._hash.shape[0] and self._hash[i] == h:
            pid, pos = int(self._part[i]), int(self._pos[i])
            if self.index.partition(pid).meta.column("key")[pos].as_py() == usi:
                return pid, pos
            i += 1
        return None

    def get(self, usis: Sequence[str]) -> tuple[npt.NDArray[np.float32], list[float], list[str]]:
        """Vectors, precursor m/z and ion modes of ``usis``; an unknown one raises UnknownSpectrumError."""
        found = [self.locate(u) for u in usis]
        missing = [u for u, f in zip(usis, found, strict=True) if f is None]
        if missing:
            raise UnknownSpectrumError(f"not in the repository: {', '.join(missing[:5])}"
                                       + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        emb = np.zeros((len(usis), self.index.dim), np.float32)
        mass, modes = [], []
        for i, loc in enumerate(found):
            assert loc is not None
            part = self.index.partition(loc[0])
            emb[i] = part.vectors[loc[1]]
            mass.append(float(part.mass[loc[1]]))
            modes.append(part.entry.ion_mode)
        return emb, mass, modes


def lookup_usis(usis: Sequence[str], stored: StoredVectors, settings: LookupSettings,
                tanimoto: TanimotoMap | None = None) -> pa.Table:
    """Hits of spectra held in the repository, queried by USI with their stored vectors."""
    if not usis:
        return LOOKUP_SCHEMA.empty_table()
    emb, mass, modes = stored.get(usis)
    return lookup_embeddings(stored.index, emb, mass, modes, list(usis), settings, tanimoto)


def neutral_masses(smiles: Sequence[str]) -> list[float]:
    """Monoisotopic masses of ``smiles``; an unparsable one raises InvalidMoleculeError naming it."""
    from rdkit.Chem.rdMolDescriptors import CalcExactMolWt

    out = []
    for smi in smiles:
        mol = parse_smiles(smi, max_length=2000)
        if mol is None:
            raise InvalidMoleculeError(f"SMILES cannot be parsed: {smi[:200]!r}", reason="invalid_smiles")
        out.append(float(CalcExactMolWt(mol)))
    return out


def lookup_structures(smiles: Sequence[str], index: VectorIndex, model: Any, settings: LookupSettings,
                      tanimoto: TanimotoMap | None = None) -> pa.Table:
    """Repository spectra nearest to structures through the joint space (see the module docstring)."""
    if not smiles:
        return LOOKUP_SCHEMA.empty_table()
    if not hasattr(model, "embed_smiles"):
        raise EngineError("structure lookups need the joint model (this repository was embedded without one)")
    masses = np.asarray(neutral_masses(smiles), dtype=np.float64)
    emb = np.asarray(model.embed_smiles(list(smiles)), dtype=np.float32)
    n = emb.shape[0]
    queries = np.arange(n)
    adducts = settings.adducts or (("[M+H]+", "[M-H]-") if settings.mode == "identity" else ())
    found = []
    if adducts:
        for name in adducts:
            adduct = parse_adduct(name)
            mode = "positive" if adduct.charge > 0 else "negative"
            center = np.asarray([adduct.mz_from_neutral(m) for m in masses], dtype=np.float64)
            window = (Tolerance(settings.max_mass_difference, "Da")
                      if settings.mode == "analogue" and settings.max_mass_difference is not None
                      else Tolerance(settings.precursor_tolerance_ppm, "ppm"))
            same = mode_pairing(np.full(n, mode == "positive"), np.full(n, mode == "positive"))
            found.append(_search_mode(index, emb, queries, mode, center, window, settings.top_k, same, center))
    else:
        for mode in ION_MODES:
            pos = mode == "positive"
            found.append(_search_mode(index, emb, queries, mode, np.full(n, np.nan), None, settings.top_k,
                                      mode_pairing(np.full(n, pos), np.full(n, pos)), np.full(n, np.nan)))
    return _assemble(found, list(smiles), settings.top_k, tanimoto)


def hit_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> None, floats rounded to 6 decimals)."""
    out = []
    for row in table.to_pylist():
        for name, value in row.items():
            if isinstance(value, float):
                row[name] = None if not np.isfinite(value) else round(value, 6)
        out.append(row)
    return out
