"""Benchmark vectors: real MassBank spectra, then realistic perturbed copies, embedded and streamed to disk.

Rows ``0 .. n_real-1`` are the real MassBank spectra (89,284). Every later row is a perturbed copy of a
random real spectrum, re-embedded:

* peak dropout: each peak is lost with probability ``0.1 + 0.4 * (1 - I/Imax)^2`` (weak peaks go first;
  the base peak is kept),
* m/z jitter: ``mz * (1 + N(0, 5 ppm))``; precursor ``* (1 + N(0, 3 ppm))``,
* intensity noise: ``I * LogNormal(0, 0.3)``,
* noise peaks: Poisson(2) per spectrum, uniform m/z in ``[50, precursor]``, intensity ``U(0, 5%)`` of the
  base peak.

:func:`calibration` compares the cosine between a spectrum and its perturbed copy with the cosine
between replicate MassBank spectra (same structure, adduct, instrument type and collision energy), so
the perturbations can be checked to be no easier than real replicates. Chunk ``c`` is drawn from
``default_rng((seed, c))``: a smaller set is always a prefix of a larger one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

MASSBANK = Path(__file__).resolve().parents[3] / "shared" / "data" / "massbank" / "spectra.parquet"
CHUNK = 50_000


@dataclass
class Peaks:
    """Spectra as flat peak arrays (Arrow-style offsets)."""

    offsets: npt.NDArray[np.int64]
    mz: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float32]
    precursor_mz: npt.NDArray[np.float64]
    ion_mode: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def take(self, rows: npt.NDArray[np.int64]) -> Peaks:
        counts = np.diff(self.offsets)[rows]
        off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = np.repeat(self.offsets[rows] - off[:-1], counts) + np.arange(off[-1])
        return Peaks(off, self.mz[idx], self.intensity[idx], self.precursor_mz[rows], self.ion_mode[rows])

    def to_batch(self) -> pa.RecordBatch:
        """A record batch of the spectrum schema (peaks, precursor, ion mode; other columns null)."""
        from engine.core.schema import SPECTRUM_SCHEMA

        n = len(self)
        off = pa.array(self.offsets.astype(np.int32))
        cols: dict[str, Any] = {
            "spectrum_id": pa.array([f"s{i}" for i in range(n)]), "source_file": pa.array(["bench"] * n),
            "precursor_mz": pa.array(self.precursor_mz), "ion_mode": pa.array(list(self.ion_mode), pa.string()),
            "ms_level": pa.array(np.full(n, 2, np.int8)),
            "n_peaks": pa.array(np.diff(self.offsets).astype(np.int32)),
            "mz": pa.ListArray.from_arrays(off, pa.array(self.mz)),
            "intensity": pa.ListArray.from_arrays(off, pa.array(self.intensity.astype(np.float32))),
        }
        arrays = [cols.get(f.name, pa.nulls(n, f.type)) for f in SPECTRUM_SCHEMA]
        return pa.RecordBatch.from_arrays(arrays, schema=SPECTRUM_SCHEMA)


def load_massbank(path: Path = MASSBANK) -> tuple[Peaks, pa.Table]:
    """All MassBank spectra as :class:`Peaks`, and their metadata columns."""
    cols = ["spectrum_id", "mz", "intensity", "precursor_mz", "ion_mode", "split", "inchikey14", "adduct",
            "instrument_type", "collision_energy"]
    table = pq.read_table(path, columns=cols)
    mz = table.column("mz").combine_chunks()
    inten = table.column("intensity").combine_chunks()
    peaks = Peaks(mz.offsets.to_numpy().astype(np.int64), mz.values.to_numpy(),
                  inten.values.to_numpy().astype(np.float32), table.column("precursor_mz").to_numpy(),
                  np.asarray(table.column("ion_mode").to_pylist(), dtype=object))
    return peaks, table.drop_columns(["mz", "intensity"])


def perturb(peaks: Peaks, rng: np.random.Generator) -> Peaks:
    """Perturbed copies of ``peaks`` (see the module docstring)."""
    n = len(peaks)
    counts = np.diff(peaks.offsets)
    row = np.repeat(np.arange(n), counts)
    base = np.zeros(n, np.float32)
    np.maximum.at(base, row, peaks.intensity)
    rel = peaks.intensity / np.maximum(base[row], 1e-12)
    keep = (rng.random(row.shape[0]) > 0.1 + 0.4 * (1 - rel) ** 2) | (rel >= 1.0)
    mz = peaks.mz[keep] * (1 + rng.normal(0, 5e-6, int(keep.sum())))
    inten = (peaks.intensity[keep] * rng.lognormal(0, 0.3, int(keep.sum()))).astype(np.float32)
    row_k = row[keep]
    n_noise = rng.poisson(2.0, n)
    noise_row = np.repeat(np.arange(n), n_noise)
    hi = np.maximum(peaks.precursor_mz, 60.0)[noise_row]
    noise_mz = 50.0 + rng.random(noise_row.shape[0]) * (hi - 50.0)
    noise_in = (rng.random(noise_row.shape[0]) * 0.05 * base[noise_row]).astype(np.float32)
    all_row = np.concatenate([row_k, noise_row])
    all_mz = np.concatenate([mz, noise_mz])
    all_in = np.concatenate([inten, noise_in])
    order = np.lexsort((all_mz, all_row))
    new_counts = np.bincount(all_row, minlength=n)
    off = np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int64)
    prec = peaks.precursor_mz * (1 + rng.normal(0, 3e-6, n))
    return Peaks(off, all_mz[order], all_in[order], prec, peaks.ion_mode)


Embed = Callable[[Peaks], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def fixed_embed(dim: int) -> tuple[Embed, str]:
    """The fixed binned-peak embedder as an :data:`Embed` function, and its encoder hash."""
    from engine.models.encoders.fixed import FixedSpectrumEmbedder

    emb = FixedSpectrumEmbedder(dim=dim)

    def run(p: Peaks) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        out_e, out_q = [], []
        for s in range(0, len(p), 8192):
            sub = p.take(np.arange(s, min(len(p), s + 8192)))
            e, q = emb.embed_peaks(sub.offsets, sub.mz, sub.intensity)
            out_e.append(e)
            out_q.append(q)
        return np.concatenate(out_e), np.concatenate(out_q)

    return run, emb.encoder_hash


def model_embed(path: str | None = None) -> tuple[Embed, str, int]:
    """The trained model as an :data:`Embed` function, its encoder hash and dimension."""
    from engine.jobs.artifacts import open_model

    model = open_model(path)

    def run(p: Peaks) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        emb, quality = model.embed_spectra(p.to_batch(), batch_size=2048)
        return np.asarray(emb, np.float32), np.asarray(quality, np.float32)

    return run, model.encoder_hash, model.dim


@dataclass
class VectorSet:
    """Memory-mapped benchmark vectors with their precursor m/z, ion mode and quality."""

    vectors: npt.NDArray[np.float32]
    precursor_mz: npt.NDArray[np.float64]
    ion_mode: npt.NDArray[np.bool_]  # True = positive
    quality: npt.NDArray[np.float32]

    def prefix(self, n: int) -> VectorSet:
        return VectorSet(self.vectors[:n], self.precursor_mz[:n], self.ion_mode[:n], self.quality[:n])


def build_vector_set(workdir: Path, n: int, embed: Embed, tag: str, *, seed: int = 0,
                     progress: bool = True) -> VectorSet:
    """Rows ``0..n-1`` (real MassBank, then perturbed copies) in ``workdir/<tag>.*.npy``, reused when there."""
    from tqdm import tqdm

    workdir.mkdir(parents=True, exist_ok=True)
    paths = {k: workdir / f"{tag}.{k}.npy" for k in ("vectors", "precursor_mz", "ion_mode", "quality")}
    done = workdir / f"{tag}.rows"
    if done.exists() and int(done.read_text()) >= n:
        arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
        return VectorSet(arrays["vectors"], arrays["precursor_mz"], arrays["ion_mode"],
                         arrays["quality"]).prefix(n)
    real, _ = load_massbank()
    first_e, first_q = embed(real)
    dim = first_e.shape[1]
    vec = np.lib.format.open_memmap(paths["vectors"], mode="w+", dtype=np.float32, shape=(n, dim))
    prec = np.lib.format.open_memmap(paths["precursor_mz"], mode="w+", dtype=np.float64, shape=(n,))
    mode = np.lib.format.open_memmap(paths["ion_mode"], mode="w+", dtype=np.bool_, shape=(n,))
    qual = np.lib.format.open_memmap(paths["quality"], mode="w+", dtype=np.float32, shape=(n,))
    n_real = min(n, len(real))
    vec[:n_real], qual[:n_real] = first_e[:n_real], first_q[:n_real]
    prec[:n_real] = real.precursor_mz[:n_real]
    mode[:n_real] = real.ion_mode[:n_real] == "positive"
    bar = tqdm(total=n, initial=n_real, unit=" vectors", desc=f"embed {tag}", disable=not progress,
               mininterval=2.0)
    start, chunk = n_real, 0
    while start < n:
        size = min(CHUNK, n - start)
        rng = np.random.default_rng((seed, chunk))
        src = real.take(rng.integers(0, len(real), size))
        copy = perturb(src, rng)
        e, q = embed(copy)
        vec[start:start + size], qual[start:start + size] = e, q
        prec[start:start + size] = copy.precursor_mz
        mode[start:start + size] = copy.ion_mode == "positive"
        start += size
        chunk += 1
        bar.update(size)
    bar.close()
    for arr in (vec, prec, mode, qual):
        arr.flush()
    done.write_text(str(n))
    del vec, prec, mode, qual
    return build_vector_set(workdir, n, embed, tag, seed=seed, progress=False)


def queries(embed: Embed, n: int, *, seed: int = 12345) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64],
                                                                 npt.NDArray[np.bool_]]:
    """``n`` query vectors: validation-split spectra, freshly perturbed (never rows of the database)."""
    real, meta = load_massbank()
    rng = np.random.default_rng(seed)
    val = np.flatnonzero(np.asarray(meta.column("split").to_pylist(), dtype=object) == "val")
    rows = np.sort(rng.choice(val, size=min(n, val.shape[0]), replace=False))
    copy = perturb(real.take(rows), rng)
    e, _ = embed(copy)
    return e, copy.precursor_mz, copy.ion_mode == "positive"


def calibration(embed: Embed, *, n_pairs: int = 5000, seed: int = 5) -> dict[str, float]:
    """Median / quartile cosines: real replicate pairs vs (spectrum, perturbed copy) pairs."""
    real, meta = load_massbank()
    rng = np.random.default_rng(seed)
    keys = [f"{a}|{b}|{c}|{d}" for a, b, c, d in zip(*(meta.column(c).to_pylist() for c in
            ("inchikey14", "adduct", "instrument_type", "collision_energy")), strict=True)]
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    multi = [g for g in groups.values() if len(g) > 1]
    pick = rng.choice(len(multi), size=min(n_pairs, len(multi)), replace=False)
    pairs = np.array([rng.choice(multi[i], 2, replace=False) for i in pick])
    ea, _ = embed(real.take(pairs[:, 0]))
    eb, _ = embed(real.take(pairs[:, 1]))
    rep = np.sum(ea * eb, axis=1)
    src = rng.choice(len(real), size=n_pairs, replace=False)
    e0, _ = embed(real.take(src))
    e1, _ = embed(perturb(real.take(src), rng))
    per = np.sum(e0 * e1, axis=1)
    return {"replicate_pairs": len(pairs), "replicate_cosine_q25": float(np.quantile(rep, 0.25)),
            "replicate_cosine_median": float(np.median(rep)),
            "perturbed_cosine_q25": float(np.quantile(per, 0.25)),
            "perturbed_cosine_median": float(np.median(per))}
