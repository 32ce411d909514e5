"""FAISS indexes of one partition: the size rule, build (train on a sample, fill in batches), save, load.

Size rule (after GLEAMS), applied per partition of ``n`` rows and dimension ``d``:

* ``n <= flat_max_rows``: **exact** search (no FAISS index; the partition's vectors are scanned).
* else **IVF-Flat** while ``n * d * 4`` bytes fit ``ivf_flat_max_bytes``, else **IVF-PQ** with
  ``d / pq_dims_per_code`` sub-quantisers of 8 bits (``4 * d / ...`` times smaller than floats).
* ``nlist = 2 ** floor(log2(n / rows_per_list))`` clamped to ``[min_nlist, max_nlist]``
  (FAISS wants at least 39 training points per centroid, hence ``rows_per_list = 39``).
* k-means is trained on a random sample of ``train_rows_per_list * nlist`` rows (at most
  ``max_train_rows``); vectors are then added in batches of ``add_batch_rows``.
* ``n_probe`` is clamped to ``[1, nlist]``; the default 16 was measured by ``benchmarks/index``: at
  1M vectors (nlist 4096) IVF-Flat reaches recall@10 0.99 at about 120x the speed of exact search.
* IVF-PQ candidates are over-fetched ``refine_factor`` (10) times and re-scored exactly from the
  stored vectors (recall@10 0.96 at 1M, n_probe 16, against 0.65 from the PQ codes alone).
* With ``refine_codes`` (the default), an IVF-PQ partition also keeps 8-bit scalar codes of its vectors
  (``d`` bytes a row, a quarter of the floats) **in memory**: candidates are then over-fetched
  ``code_refine_factor`` (40) times, re-scored from those codes (cosine error about 0.002), and only
  the best ``2 k`` are re-scored exactly from the memory-mapped floats. A lookup then reads ``2 k``
  random rows of the float file instead of ``10 k``, so a partition far larger than memory is served
  from its PQ and scalar codes, and the longer shortlist recovers near-duplicates the PQ codes misorder.

The metric is inner product on L2-normalised vectors, i.e. cosine. GPU FAISS is used for training,
adding and unfiltered search when ``faiss.get_num_gpus() > 0``; results match the CPU path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from engine.core.config import Settings, from_mapping, setting
from engine.core.fsutil import atomic_path

IndexKind = Literal["flat", "ivf_flat", "ivf_pq"]
INDEX_KINDS: tuple[IndexKind, ...] = ("flat", "ivf_flat", "ivf_pq")


@dataclass(frozen=True)
class IndexPolicy(Settings):
    """Every knob of the size rule; ``None`` means "derive from the data" where allowed."""

    flat_max_rows: int = setting(50_000, ge=0)
    ivf_flat_max_bytes: int = 2 * 2**30
    rows_per_list: int = setting(39, ge=1)
    min_nlist: int = setting(16, ge=1)
    max_nlist: int = 4096
    n_probe: int = setting(16, ge=1)
    pq_dims_per_code: int = 4
    pq_nbits: int = 8
    refine_factor: int = setting(10, ge=1)
    refine_codes: bool = True
    code_refine_factor: int = setting(40, ge=1)
    exact_window_rows: int = 4096
    train_rows_per_list: int = 64
    max_train_rows: int = 300_000
    add_batch_rows: int = 65_536
    target_partition_rows: int = 2_000_000
    drift_factor: float = 4.0
    min_tail_rows: int = 20_000
    force_kind: IndexKind | None = None
    seed: int = 0

    def check(self) -> Iterable[str]:
        if self.max_nlist < self.min_nlist:
            yield "need min_nlist <= max_nlist"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexPolicy:
        """A policy from its saved dict; an unknown key is an error."""
        return from_mapping(cls, data, where="index policy")

    def kind_for(self, n_rows: int, dim: int) -> IndexKind:
        """Index kind of a partition of ``n_rows`` vectors (see the module docstring)."""
        if self.force_kind is not None:
            return self.force_kind
        if n_rows <= self.flat_max_rows:
            return "flat"
        return "ivf_flat" if n_rows * dim * 4 <= self.ivf_flat_max_bytes else "ivf_pq"

    def nlist_for(self, n_rows: int) -> int:
        """``2 ** floor(log2(n / rows_per_list))`` clamped to ``[min_nlist, max_nlist]``."""
        raw = 2 ** math.floor(math.log2(max(n_rows / self.rows_per_list, 1.0)))
        return int(min(max(raw, self.min_nlist), self.max_nlist))

    def pq_m_for(self, dim: int) -> int:
        """Number of PQ sub-quantisers: the largest divisor of ``dim`` <= ``dim / pq_dims_per_code``."""
        m = max(1, dim // self.pq_dims_per_code)
        while dim % m:
            m -= 1
        return m

    def n_probe_for(self, nlist: int, n_probe: int | None = None) -> int:
        return int(min(max(n_probe if n_probe is not None else self.n_probe, 1), nlist))


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def _to_gpu(index: Any) -> Any:
    """A GPU clone of ``index`` that keeps its GPU resources alive.

    Float16 lookup tables let IVF-PQ with many sub-quantisers fit the GPU's shared memory; PQ
    candidates are re-scored exactly afterwards, so this does not change the scores returned.
    """
    import faiss

    res = faiss.StandardGpuResources()
    options: Any = faiss.GpuClonerOptions()
    options.useFloat16LookupTables = True
    gpu: Any = faiss.index_cpu_to_gpu(res, 0, index, options)
    gpu.referenced_objects = [res]
    return gpu


def new_index(kind: IndexKind, dim: int, *, nlist: int, pq_m: int = 0, pq_nbits: int = 8) -> Any:
    """An empty, untrained FAISS index (inner-product metric) of ``kind`` (``flat`` gives IndexFlatIP)."""
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "ivf_flat":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, metric)
    if kind == "ivf_pq":
        return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, pq_nbits, metric)
    raise ValueError(f"unknown index kind {kind!r}")


def sample_rows(n_rows: int, n_sample: int, seed: int) -> npt.NDArray[np.int64]:
    """Sorted random row positions (all rows when ``n_sample >= n_rows``)."""
    if n_sample >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=n_sample, replace=False)).astype(np.int64)


def build_ivf(vectors: npt.NDArray[np.float32], kind: IndexKind, policy: IndexPolicy, *,
              use_gpu: bool | None = None, progress: Callable[[int], None] | None = None) -> Any:
    """Train an IVF index on a sample of ``vectors`` (an array or memmap) and add all rows in order.

    FAISS ids are row positions ``0..n-1``. ``progress`` is called with the number of rows added.
    """
    import faiss

    if kind == "flat":
        raise ValueError("flat partitions are searched exactly and have no FAISS index")
    n, dim = vectors.shape
    nlist = policy.nlist_for(n)
    index = new_index(kind, dim, nlist=nlist, pq_m=policy.pq_m_for(dim), pq_nbits=policy.pq_nbits)
    n_train = min(policy.train_rows_per_list * nlist, policy.max_train_rows)
    if kind == "ivf_pq":  # PQ codebooks want ~39 points per code too
        n_train = max(n_train, 39 * 2**policy.pq_nbits)
    train_ids = sample_rows(n, n_train, policy.seed)
    train = np.ascontiguousarray(vectors[train_ids], dtype=np.float32)
    index.cp.seed = policy.seed
    index.cp.max_points_per_centroid = max(policy.train_rows_per_list, 39)
    use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
    work = index
    if use_gpu:
        work = _to_gpu(index)
    work.train(train)
    del train
    for start in range(0, n, policy.add_batch_rows):
        chunk = np.ascontiguousarray(vectors[start:start + policy.add_batch_rows], dtype=np.float32)
        work.add(chunk)
        if progress is not None:
            progress(chunk.shape[0])
    if use_gpu:
        index = faiss.index_gpu_to_cpu(work)
    return index


def build_refine_codes(vectors: npt.NDArray[np.float32], policy: IndexPolicy) -> Any:
    """8-bit scalar codes of every row of ``vectors`` (a FAISS IndexScalarQuantizer, ranges per dimension
    trained on a sample); ids are row positions, like the IVF index's."""
    import faiss

    n, dim = vectors.shape
    codes: Any = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    # ranges are the sample's min / max widened by a tenth on each side, so that rows appended later
    # (until the partition is retrained) seldom fall outside them and get clipped
    codes.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
    codes.sq.rangestat_arg = 0.1
    train_ids = sample_rows(n, min(n, policy.max_train_rows), policy.seed)
    codes.train(np.ascontiguousarray(vectors[train_ids], dtype=np.float32))
    add_to_index(codes, vectors, batch_rows=policy.add_batch_rows)
    return codes


def code_scores(codes: Any, queries: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """Approximate inner products of ``queries`` ``[m, d]`` with rows ``ids`` ``[m, c]`` (>= 0) decoded
    from scalar ``codes``."""
    m, c = ids.shape
    out = np.empty((m, c), dtype=np.float32)
    step = max(1, (1 << 22) // max(c * queries.shape[1], 1))  # decode at most ~16 MB of floats at once
    for start in range(0, m, step):
        block = ids[start:start + step]
        vecs = codes.reconstruct_batch(np.ascontiguousarray(block.reshape(-1))).reshape(*block.shape, -1)
        out[start:start + step] = np.einsum("qd,qkd->qk", queries[start:start + step], vecs)
    return out


def add_to_index(index: Any, vectors: npt.NDArray[np.float32], *, batch_rows: int = 65_536) -> None:
    """Append ``vectors`` to a trained index (ids continue at ``index.ntotal``)."""
    for start in range(0, vectors.shape[0], batch_rows):
        index.add(np.ascontiguousarray(vectors[start:start + batch_rows], dtype=np.float32))


def save_index(index: Any, path: str | Path) -> None:
    """Write ``index`` atomically (temporary file + rename)."""
    import faiss

    path = Path(path)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: str | Path, *, mmap: bool = True) -> Any:
    """Read an index; with ``mmap`` the inverted lists stay on disk and pages load on demand (read-only)."""
    import faiss

    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    return faiss.read_index(str(path), flags)


def index_nlist(index: Any) -> int:
    import faiss

    return int(faiss.extract_index_ivf(index).nlist)


def search_ivf(index: Any, queries: npt.NDArray[np.float32], top_k: int, *, n_probe: int,
               selector: Any = None) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-k by inner product; ``selector`` (a ``faiss.IDSelector``) restricts the candidate ids."""
    import faiss

    params = faiss.SearchParametersIVF()
    params.nprobe = n_probe
    if selector is not None:
        params.sel = selector
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), top_k, params=params)
    return scores, ids


def to_gpu(index: Any) -> Any:
    """A GPU copy of ``index`` for unfiltered batched search."""
    return _to_gpu(index)


def index_bytes(index: Any) -> int:
    """Serialized size of ``index`` in bytes."""
    import faiss

    return int(faiss.serialize_index(index).nbytes)
