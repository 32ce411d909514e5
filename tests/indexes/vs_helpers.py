"""Helpers for the vector-store tests: real MassBank spectra (the shipped sample) and perturbed copies,
embedded with the fixed embedder, and a brute-force reference search."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.models.encoders.fixed import FixedSpectrumEmbedder

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "queries" / "massbank_sample.parquet"
DIM = 32


@dataclass
class Embedded:
    """Rows ready for an index: light columns and their unit vectors."""

    row_id: npt.NDArray[np.int64]
    key: list[str]
    mass: npt.NDArray[np.float64]
    ion_mode: npt.NDArray[np.object_]
    quality: npt.NDArray[np.float32]
    vectors: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.row_id.shape[0])

    def light(self, sel: slice | npt.NDArray[np.int64] = slice(None)) -> pa.Table:
        idx = np.arange(len(self))[sel]
        return pa.table({"row_id": self.row_id[idx], "key": [self.key[i] for i in idx], "mass": self.mass[idx],
                         "ion_mode": list(self.ion_mode[idx]), "quality": self.quality[idx]})

    def batches(self, sel: slice | npt.NDArray[np.int64] = slice(None), size: int = 500
                ) -> Callable[[], Iterator[pa.RecordBatch]]:
        idx = np.arange(len(self))[sel]

        def gen() -> Iterator[pa.RecordBatch]:
            for s in range(0, len(idx), size):
                part = idx[s:s + size]
                emb = pa.FixedSizeListArray.from_arrays(pa.array(self.vectors[part].reshape(-1)), DIM)
                yield pa.RecordBatch.from_arrays([pa.array(self.row_id[part]), emb], names=["row_id", "embedding"])

        return gen


def embed_sample(sample_table: pa.Table) -> Embedded:
    """214 real spectra and 9 perturbed copies of each (peak dropout, m/z jitter, intensity noise)."""
    rng = np.random.default_rng(7)
    emb = FixedSpectrumEmbedder(dim=DIM)
    mz_col, in_col = sample_table.column("mz").combine_chunks(), sample_table.column("intensity").combine_chunks()
    offsets = mz_col.offsets.to_numpy().astype(np.int64)
    mz = mz_col.values.to_numpy()
    inten = in_col.values.to_numpy()
    prec = sample_table.column("precursor_mz").to_numpy()
    modes = np.asarray(sample_table.column("ion_mode").to_pylist(), dtype=object)
    ids = sample_table.column("spectrum_id").to_pylist()
    vecs, qual, mass, mode, keys = [], [], [], [], []
    for copy in range(10):
        if copy == 0:
            keep = np.ones(mz.shape[0], bool)
            m, i = mz, inten
            pm = prec
        else:
            keep = rng.random(mz.shape[0]) > 0.2
            m = mz + rng.normal(0, 0.002, mz.shape[0])
            i = inten * rng.lognormal(0, 0.3, mz.shape[0]).astype(np.float32)
            pm = prec * (1 + rng.normal(0, 3e-6, prec.shape[0]))
        counts = np.add.reduceat(keep.astype(np.int64), offsets[:-1]) if mz.shape[0] else np.zeros(0, np.int64)
        counts[np.diff(offsets) == 0] = 0
        off = np.concatenate([[0], np.cumsum(counts)])
        v, q = emb.embed_peaks(off, m[keep], i[keep])
        vecs.append(v)
        qual.append(q)
        mass.append(pm)
        mode.append(modes)
        keys += [f"{k}#{copy}" for k in ids]
    n = len(keys)
    return Embedded(row_id=np.arange(n, dtype=np.int64) * 3 + 5, key=keys, mass=np.concatenate(mass),
                    ion_mode=np.concatenate(mode), quality=np.concatenate(qual), vectors=np.concatenate(vecs))


def brute_force(emb: Embedded, queries: npt.NDArray[np.float32], top_k: int, *,
                mass: npt.NDArray[np.float64] | None = None, tol_ppm: float | None = None,
                tol_da: float | None = None, ion_mode: list[str] | None = None,
                min_quality: float | None = None, exclude_rows: npt.NDArray[np.int64] | None = None
                ) -> list[list[tuple[int, float]]]:
    """Per query, the best ``top_k`` (row_id, score) by exact cosine among rows passing the filters."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ emb.vectors.T
    ok = np.ones_like(scores, dtype=bool)
    if mass is not None:
        delta = mass * tol_ppm * 1e-6 if tol_ppm is not None else np.full(mass.shape, tol_da)
        ok &= (emb.mass[None, :] >= (mass - delta)[:, None]) & (emb.mass[None, :] <= (mass + delta)[:, None])
    if ion_mode is not None:
        ok &= emb.ion_mode[None, :] == np.asarray(ion_mode, dtype=object)[:, None]
    if min_quality is not None:
        ok &= (emb.quality >= min_quality)[None, :]
    if exclude_rows is not None:
        ok &= ~np.isin(emb.row_id, exclude_rows)[None, :]
    scores = np.where(ok, scores, -np.inf)
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_k]
        out.append([(int(emb.row_id[j]), float(row[j])) for j in order if np.isfinite(row[j])])
    return out


def as_lists(result: pa.Table, n_queries: int) -> list[list[tuple[int, float]]]:
    """Search results as per-query lists of (row_id, score) in rank order."""
    out: list[list[tuple[int, float]]] = [[] for _ in range(n_queries)]
    rows = sorted(zip(result.column("query_index").to_pylist(), result.column("rank").to_pylist(),
                      result.column("row_id").to_pylist(), result.column("score").to_pylist(), strict=True))
    for qi, _, rid, score in rows:
        out[qi].append((rid, score))
    return out


def assert_same_hits(got: list[list[tuple[int, float]]], want: list[list[tuple[int, float]]],
                     atol: float = 1e-5) -> None:
    """Same scores rank by rank, and the same ids except among tied scores."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w), (g, w)
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], atol=atol)
        gs = {rid for rid, s in g if s > w[-1][1] + atol} if w else set()
        ws = {rid for rid, s in w if s > w[-1][1] + atol} if w else set()
        assert gs == ws
