"""A partitioned vector index directory: build, load lazily (memory-mapped), add rows, retrain.

Layout of ``DIR`` (inside a library it is ``LIBRARY/index``)::

    manifest.json                       see indexes.manifest
    <mode>-<nnn>.g<gen>.vectors.npy     float32 [n, dim], L2-normalised, rows sorted by mass
    <mode>-<nnn>.g<gen>.meta.arrow      row_id, key, mass, quality in the same order (Arrow IPC)
    <mode>-<nnn>.g<gen>.faiss           IVF-Flat / IVF-PQ partitions only; FAISS id = position
    <mode>-<nnn>.g<gen>.codes.faiss     IVF-PQ partitions only: 8-bit scalar codes for re-scoring

The raw vectors are kept beside IVF indexes so that small precursor windows are searched exactly
(contiguous, mass-sorted slices) and IVF-PQ candidates are re-scored exactly: every score returned by
:mod:`indexes.search` is an exact cosine. IVF-PQ partitions also hold 8-bit codes of their vectors,
loaded into memory, which shortlist candidates before the exact re-score (:mod:`indexes.faiss_ivf`).
Rows added later are appended after the sorted ones (the *tail*) and to the IVF lists without
retraining; :meth:`VectorIndex.retrain` re-sorts and retrains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.errors import IncompatibleArtifactError, InvalidInputError
from engine.core.fsutil import atomic_path
from indexes.faiss_ivf import (
    IndexPolicy,
    add_to_index,
    build_ivf,
    build_refine_codes,
    gpu_count,
    index_nlist,
    load_index,
    save_index,
)
from indexes.manifest import MANIFEST_NAME, IndexManifest, PartitionEntry
from indexes.partition import PartitionScheme

META_SCHEMA = pa.schema([  # type: ignore[arg-type]
    pa.field("row_id", pa.int64(), nullable=False), pa.field("key", pa.string()),
    pa.field("mass", pa.float64(), nullable=False), pa.field("quality", pa.float32(), nullable=False),
])
#: Columns of the light table given to :func:`build_vector_index` / :meth:`VectorIndex.add`.
LIGHT_COLUMNS = ("row_id", "key", "mass", "ion_mode", "quality")


@dataclass
class PartitionData:
    """One partition's arrays, memory-mapped; ``index`` is the FAISS index (None for exact partitions),
    ``codes`` the in-memory scalar codes of an IVF-PQ partition (None without them)."""

    entry: PartitionEntry
    vectors: npt.NDArray[np.float32]
    meta: pa.Table
    index: Any = None
    codes: Any = None
    n_probe: int = 16
    refine_factor: int = 10
    code_refine_factor: int = 40
    exact_window_rows: int = 4096
    gpu_index: Any = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def mass(self) -> npt.NDArray[np.float64]:
        if "mass" not in self._cache:
            self._cache["mass"] = _column_numpy(self.meta, "mass")
        return self._cache["mass"]

    @property
    def quality(self) -> npt.NDArray[np.float32]:
        if "quality" not in self._cache:
            self._cache["quality"] = _column_numpy(self.meta, "quality")
        return self._cache["quality"]

    @property
    def row_id(self) -> npt.NDArray[np.int64]:
        if "row_id" not in self._cache:
            self._cache["row_id"] = _column_numpy(self.meta, "row_id")
        return self._cache["row_id"]

    def keys(self, positions: npt.NDArray[np.int64]) -> pa.Array:
        """The keys at ``positions``: :func:`take_rows` of the memory-mapped key column."""
        return take_rows(self.meta.column("key"), positions)


def take_rows(column: pa.ChunkedArray, positions: npt.NDArray[np.int64]) -> pa.Array:
    """``column[positions]`` as one array, taken chunk by chunk. ``ChunkedArray.take`` first concatenates
    every chunk, which for the key column of a partition of millions of memory-mapped rows copies all of
    them for the sake of ten."""
    positions = np.asarray(positions, dtype=np.int64)
    chunks: list[Any] = list(column.chunks)
    if len(chunks) == 1:
        return chunks[0].take(positions)
    starts = np.cumsum([0] + [len(c) for c in chunks])
    which = np.searchsorted(starts, positions, side="right") - 1
    pieces: list[Any] = []
    where = []
    for c in np.unique(which):
        sel = np.flatnonzero(which == c)
        pieces.append(chunks[int(c)].take(positions[sel] - starts[c]))
        where.append(sel)
    if not pieces:
        return pa.array([], column.type)
    inverse = np.empty(positions.shape[0], dtype=np.int64)
    inverse[np.concatenate(where)] = np.arange(positions.shape[0])
    joined: Any = pa.concat_arrays(pieces)
    return joined.take(inverse)


def _column_numpy(table: pa.Table, name: str) -> Any:
    col = table.column(name)
    return col.chunk(0).to_numpy() if col.num_chunks == 1 else col.to_numpy()


class VectorIndex:
    """An opened index directory; partitions load on first use (vectors and IVF lists memory-mapped)."""

    def __init__(self, directory: str | Path, manifest: IndexManifest, *, use_gpu: bool | None = None,
                 partitions: Sequence[str] | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        self._parts: dict[int, PartitionData] = {}
        names = [p.name for p in manifest.partitions]
        unknown = sorted(set(partitions or ()) - set(names))
        if unknown:
            raise ValueError(f"no partitions named {unknown} in {directory}")
        self.served = frozenset(i for i, n in enumerate(names) if partitions is None or n in partitions)

    @classmethod
    def open(cls, directory: str | Path, *, dim: int | None = None, encoder_hash: str | None = None,
             table_rows: int | None = None, use_gpu: bool | None = None,
             partitions: Sequence[str] | None = None) -> VectorIndex:
        """Open ``directory``, refusing it (IncompatibleArtifactError) when it does not match the model or table.

        ``partitions`` restricts searches to those partitions (a shard set, see :mod:`indexes.shards`).
        """
        manifest = IndexManifest.load(directory)
        manifest.check(where=str(directory), dim=dim, encoder_hash=encoder_hash, table_rows=table_rows)
        return cls(directory, manifest, use_gpu=use_gpu, partitions=partitions)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def __len__(self) -> int:
        return self.manifest.n_rows

    def partition(self, ordinal: int) -> PartitionData:
        """Load (once) partition ``ordinal``: memory-mapped vectors, metadata and FAISS index."""
        if ordinal not in self._parts:
            entry = self.manifest.partitions[ordinal]
            part = _load_partition(self.directory, entry, self.manifest.dim)
            part.n_probe = self.manifest.policy.n_probe
            part.refine_factor = self.manifest.policy.refine_factor
            part.code_refine_factor = self.manifest.policy.code_refine_factor
            part.exact_window_rows = self.manifest.policy.exact_window_rows
            self._parts[ordinal] = part
        return self._parts[ordinal]


def _load_partition(directory: Path, entry: PartitionEntry, dim: int, *, with_index: bool = True
                    ) -> PartitionData:
    where = f"{directory}/{entry.name}"
    try:
        vectors = np.load(directory / entry.file("vectors.npy"), mmap_mode="r")
        meta = pa.ipc.open_file(pa.memory_map(str(directory / entry.file("meta.arrow")))).read_all()
        index = (load_index(directory / entry.file("faiss"), mmap=True)
                 if entry.kind != "flat" and with_index else None)
        codes = (load_index(directory / entry.file("codes.faiss"), mmap=False)
                 if entry.refine_codes and with_index else None)
    except (OSError, pa.ArrowInvalid) as exc:
        raise IncompatibleArtifactError(f"{where}: partition files missing or unreadable ({exc}); "
                                        f"rebuild the index") from None
    if vectors.shape != (entry.n_rows, dim) or meta.num_rows != entry.n_rows or \
            any(x is not None and (x.ntotal != entry.n_rows or x.d != dim) for x in (index, codes)):
        raise IncompatibleArtifactError(f"{where}: files hold {vectors.shape[0]} vectors of dimension "
                                        f"{vectors.shape[1] if vectors.ndim == 2 else '?'} but the manifest "
                                        f"says {entry.n_rows} x {dim}; rebuild the index")
    if codes is not None:
        _advise_random(vectors)
    return PartitionData(entry=entry, vectors=vectors, meta=meta, index=index, codes=codes)


def _advise_random(vectors: npt.NDArray[np.float32]) -> None:
    """Tell the kernel that a memory-mapped vector file is read at random rows. With scalar codes in
    memory, an IVF-PQ partition reads a few scattered float rows per query, and the default read-ahead
    would pull ~128 KB around each 1 KB row: slower, and it floods the page cache."""
    import mmap

    handle = getattr(vectors, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_RANDOM"):
        handle.madvise(mmap.MADV_RANDOM)


# ----------------------------------------------------------------------------------------------- build

def _check_light(light: pa.Table) -> None:
    missing = [c for c in LIGHT_COLUMNS if c not in light.column_names]
    if missing:
        raise ValueError(f"light table lacks columns {missing}")
    if light.column("mass").null_count:
        raise InvalidInputError("rows without a mass (precursor m/z) cannot be indexed", reason="missing_precursor")
    if light.column("ion_mode").null_count:
        raise InvalidInputError("rows without an ion mode cannot be indexed", reason="missing_ion_mode")


def _embeddings_of(batch: pa.RecordBatch | pa.Table, dim: int) -> npt.NDArray[np.float32]:
    col: Any = batch.column("embedding")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        raise InvalidInputError("rows without an embedding cannot be indexed", reason="missing_embedding")
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)


def _write_meta(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, META_SCHEMA) as writer:
        writer.write_table(table.select(list(META_SCHEMA.names)).cast(META_SCHEMA), max_chunksize=1 << 20)


def _next_generation(directory: Path) -> int:
    try:
        return max((p.generation for p in IndexManifest.load(directory).partitions), default=0) + 1
    except IncompatibleArtifactError:
        return 1


def _remove_unreferenced(directory: Path, manifest: IndexManifest) -> None:
    keep = {name for p in manifest.partitions for name in p.files} | {MANIFEST_NAME}
    for path in directory.iterdir():
        if path.is_file() and path.name not in keep and ".g" in path.name:
            path.unlink()


def build_vector_index(directory: str | Path, light: pa.Table,
                       embeddings: Callable[[], Iterable[pa.RecordBatch]], *, dim: int, encoder_hash: str,
                       table: str, key_column: str, mass_column: str, table_rows: int,
                       policy: IndexPolicy | None = None, scheme: PartitionScheme | None = None,
                       progress: bool = False) -> IndexManifest:
    """Build a partitioned index from a light table (:data:`LIGHT_COLUMNS`) and a stream of embeddings.

    ``embeddings()`` yields batches with ``row_id`` and ``embedding``; it is read once and scattered into
    per-partition memory-mapped files, so memory stays at one batch plus the light table.
    """
    from tqdm import tqdm

    policy = policy or IndexPolicy()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _check_light(light)
    generation = _next_generation(directory)
    modes = np.asarray(light.column("ion_mode").to_pylist(), dtype=object)
    mass = light.column("mass").to_numpy()
    scheme = scheme or PartitionScheme.plan(modes, mass, target_rows=policy.target_partition_rows)
    part = scheme.route(modes, mass)
    if (part < 0).any():
        raise ValueError(f"ion modes {sorted(set(modes[part < 0].tolist()))} have no partitions in the scheme")
    partitions = scheme.partitions
    row_id = light.column("row_id").to_numpy()
    if np.unique(row_id).shape[0] != row_id.shape[0]:
        raise ValueError("row_id values must be unique")
    # position of every light row inside its partition: sorted by (mass, row_id)
    order = np.lexsort((row_id, mass, part))
    counts = np.bincount(part, minlength=len(partitions))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order)) - np.repeat(starts, counts)
    entries = [PartitionEntry(name=p.name, ion_mode=p.ion_mode, mass_lo=p.mass_lo, mass_hi=p.mass_hi,
                              kind=policy.kind_for(int(counts[i]), dim), n_rows=int(counts[i]),
                              n_sorted=int(counts[i]), trained_rows=int(counts[i]), generation=generation)
               for i, p in enumerate(partitions)]
    vec_files = [np.lib.format.open_memmap(directory / e.file("vectors.npy"), mode="w+", dtype=np.float32,
                                           shape=(e.n_rows, dim)) for e in entries]
    for i, e in enumerate(entries):
        rows = order[starts[i]:starts[i] + counts[i]]
        _write_meta(directory / e.file("meta.arrow"), light.take(rows))
    # scatter the embeddings
    by_row = np.argsort(row_id)
    sorted_ids = row_id[by_row]
    filled = np.zeros(len(order), dtype=bool)
    bar = tqdm(total=len(order), unit=" vectors", desc="scatter", disable=not progress, mininterval=1.0)
    for batch in embeddings():
        ids = batch.column("row_id").to_numpy()
        found = np.searchsorted(sorted_ids, ids)
        found = np.minimum(found, len(sorted_ids) - 1)
        ok = sorted_ids[found] == ids
        light_idx = by_row[found[ok]]
        vecs = _embeddings_of(batch, dim)[ok]
        bp = part[light_idx]
        for p in np.unique(bp):
            sel = bp == p
            vec_files[p][pos[light_idx[sel]]] = vecs[sel]
        filled[light_idx] = True
        bar.update(int(ok.sum()))
    bar.close()
    if not filled.all():
        raise ValueError(f"{int((~filled).sum())} rows of the light table got no embedding")
    for f in vec_files:
        f.flush()
    del vec_files
    manifest = IndexManifest(encoder_hash=encoder_hash, dim=dim, table=table, key_column=key_column,
                             mass_column=mass_column, table_rows=table_rows,
                             max_row_id=int(row_id.max()) if row_id.shape[0] else -1, scheme=scheme,
                             policy=policy, partitions=entries)
    for e in entries:
        if e.kind != "flat":
            _train_partition(directory, e, policy, progress=progress)
    manifest.save(directory)
    _remove_unreferenced(directory, manifest)
    return manifest


def _train_partition(directory: Path, entry: PartitionEntry, policy: IndexPolicy, *, progress: bool) -> None:
    from tqdm import tqdm

    vectors = np.load(directory / entry.file("vectors.npy"), mmap_mode="r")
    bar = tqdm(total=entry.n_rows, unit=" vectors", desc=f"index {entry.name} ({entry.kind})",
               disable=not progress, mininterval=1.0)
    index = build_ivf(vectors, entry.kind, policy, progress=bar.update)
    bar.close()
    save_index(index, directory / entry.file("faiss"))
    entry.nlist = index_nlist(index)
    if entry.kind == "ivf_pq":
        import faiss

        ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
        entry.pq_m, entry.pq_nbits = int(ivf.pq.M), int(ivf.pq.nbits)
        if policy.refine_codes:
            save_index(build_refine_codes(vectors, policy), directory / entry.file("codes.faiss"))
            entry.refine_codes = True


# ----------------------------------------------------------------------------------------------- update

def add_to_vector_index(directory: str | Path, light: pa.Table, embeddings: npt.NDArray[np.float32], *,
                        table_rows: int) -> IndexManifest:
    """Append rows (``light`` with :data:`LIGHT_COLUMNS` and their embeddings, same order) without retraining.

    Rows go to the partition of their ion mode and mass; a mode never seen gets one partition
    ``[0, inf)``. Partitions that outgrow their kind or training size are reported by
    :meth:`IndexManifest.stale`.
    """
    directory = Path(directory)
    manifest = IndexManifest.load(directory)
    if embeddings.shape != (light.num_rows, manifest.dim):
        raise ValueError(f"embeddings of shape {embeddings.shape}, expected ({light.num_rows}, {manifest.dim})")
    _check_light(light)
    modes = np.asarray(light.column("ion_mode").to_pylist(), dtype=object)
    new_modes = sorted({str(m) for m in modes.tolist()} - set(manifest.scheme.edges))
    generation = max((p.generation for p in manifest.partitions), default=0) + 1
    if new_modes:
        edges = dict(manifest.scheme.edges)
        edges.update({m: () for m in new_modes})
        old = {(p.ion_mode, p.mass_lo): p for p in manifest.partitions}
        manifest.scheme = PartitionScheme(edges)
        manifest.partitions = []
        for p in manifest.scheme.partitions:
            if (p.ion_mode, p.mass_lo) in old:
                manifest.partitions.append(old[(p.ion_mode, p.mass_lo)])
                manifest.partitions[-1].name = p.name
            else:
                entry = PartitionEntry(name=p.name, ion_mode=p.ion_mode, mass_lo=p.mass_lo, mass_hi=p.mass_hi,
                                       kind="flat", n_rows=0, n_sorted=0, trained_rows=0, generation=generation)
                _write_partition_files(directory, entry, np.zeros((0, manifest.dim), np.float32),
                                       light.slice(0, 0))
                manifest.partitions.append(entry)
    mass = light.column("mass").to_numpy()
    part = manifest.scheme.route(modes, mass)
    for p in np.unique(part):
        sel = np.flatnonzero(part == p)
        _append_partition(directory, manifest.partitions[p], manifest.dim, light.take(sel),
                          embeddings[sel], generation, manifest.policy)
    row_id = light.column("row_id").to_numpy()
    if row_id.shape[0]:
        manifest.max_row_id = max(manifest.max_row_id, int(row_id.max()))
    manifest.table_rows = table_rows
    manifest.save(directory)
    _remove_unreferenced(directory, manifest)
    return manifest


def _write_partition_files(directory: Path, entry: PartitionEntry, vectors: npt.NDArray[np.float32],
                           meta: pa.Table) -> None:
    out = np.lib.format.open_memmap(directory / entry.file("vectors.npy"), mode="w+", dtype=np.float32,
                                    shape=vectors.shape)
    out[:] = vectors
    out.flush()
    _write_meta(directory / entry.file("meta.arrow"), meta)


def _append_partition(directory: Path, entry: PartitionEntry, dim: int, light: pa.Table,
                      vectors: npt.NDArray[np.float32], generation: int, policy: IndexPolicy) -> None:
    old = _load_partition(directory, entry, dim, with_index=False)
    n_old, n_new = entry.n_rows, light.num_rows
    index = codes = None
    if entry.kind != "flat":
        index = load_index(directory / entry.file("faiss"), mmap=False)
        add_to_index(index, vectors, batch_rows=policy.add_batch_rows)
    if entry.refine_codes:
        codes = load_index(directory / entry.file("codes.faiss"), mmap=False)
        add_to_index(codes, vectors, batch_rows=policy.add_batch_rows)
    entry.generation = generation
    out = np.lib.format.open_memmap(directory / entry.file("vectors.npy"), mode="w+", dtype=np.float32,
                                    shape=(n_old + n_new, dim))
    step = policy.add_batch_rows
    for start in range(0, n_old, step):
        stop = min(start + step, n_old)
        out[start:stop] = old.vectors[start:stop]
    out[n_old:] = vectors
    out.flush()
    del out
    meta = pa.concat_tables([old.meta.select(list(META_SCHEMA.names)),
                             light.select(list(META_SCHEMA.names)).cast(META_SCHEMA)])
    _write_meta(directory / entry.file("meta.arrow"), meta)
    if index is not None:
        save_index(index, directory / entry.file("faiss"))
    if codes is not None:
        save_index(codes, directory / entry.file("codes.faiss"))
    entry.n_rows = n_old + n_new


def retrain_vector_index(directory: str | Path, names: Sequence[str] | None = None, *,
                         policy: IndexPolicy | None = None, progress: bool = False) -> list[str]:
    """Re-sort and rebuild partitions (default: the stale ones); returns the names rebuilt.

    Each partition is rebuilt from its own files (no table access) with the kind, nlist and PQ size
    the size rule gives for its current row count. ``policy`` replaces the manifest's when given.
    """
    directory = Path(directory)
    manifest = IndexManifest.load(directory)
    if policy is not None:
        manifest.policy = policy
    todo = list(manifest.stale()) if names is None else list(names)
    known = {p.name for p in manifest.partitions}
    unknown = sorted(set(todo) - known)
    if unknown:
        raise ValueError(f"no partitions named {unknown}; known: {sorted(known)}")
    generation = max((p.generation for p in manifest.partitions), default=0) + 1
    for entry in manifest.partitions:
        if entry.name not in todo:
            continue
        old = _load_partition(directory, entry, manifest.dim, with_index=False)
        order = np.lexsort((old.row_id, old.mass))
        meta = old.meta.select(list(META_SCHEMA.names)).take(order)
        entry.generation = generation
        out = np.lib.format.open_memmap(directory / entry.file("vectors.npy"), mode="w+", dtype=np.float32,
                                        shape=(entry.n_rows, manifest.dim))
        step = manifest.policy.add_batch_rows
        for start in range(0, entry.n_rows, step):
            out[start:start + step] = old.vectors[order[start:start + step]]
        out.flush()
        del out, old
        _write_meta(directory / entry.file("meta.arrow"), meta)
        entry.kind = manifest.policy.kind_for(entry.n_rows, manifest.dim)
        entry.n_sorted = entry.trained_rows = entry.n_rows
        entry.nlist = entry.pq_m = entry.pq_nbits = 0
        entry.refine_codes = False
        if entry.kind != "flat":
            _train_partition(directory, entry, manifest.policy, progress=progress)
    manifest.save(directory)
    _remove_unreferenced(directory, manifest)
    return todo
