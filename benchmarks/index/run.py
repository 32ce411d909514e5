"""Vector-store benchmark: exact (flat), IVF-Flat, IVF-PQ and LanceDB IVF_PQ on the same vectors.

    python -m benchmarks.index.run --sizes 100000,1000000          # a few minutes
    nohup nice -n 10 python -m benchmarks.index.run --sizes 10000000 &   # the long one, last

For every size: recall@10 against exact search and queries/s over sweeps of ``n_probe``, build time,
bytes per vector on disk and in RAM, peak memory of each stage; for the partitioned library index
(:mod:`indexes.search`) identity (10 ppm) and analogue search. Results accumulate per size in
``benchmarks/index/results.json`` and the ``index`` section of ``benchmarks/RESULTS.md``.
Vectors: see :mod:`benchmarks.index.data` (real MassBank, then perturbed re-embedded copies).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from benchmarks._results import markdown_table, write_results
from benchmarks.index import data

HERE = Path(__file__).resolve().parent
JSON = HERE / "results.json"
K = 10
#: How queries/s are timed (recorded in each run; runs before this field timed one window of >= 1 s).
TIMING = "best of 3 windows of >= 0.33 s"


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` is the maximum since ``start``."""

    def __init__(self, interval: float = 0.05) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    @contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        out: dict[str, float] = {}
        gc.collect()
        base = self.proc.memory_info().rss
        self.peak = base
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        start = time.perf_counter()
        try:
            yield out
        finally:
            out["seconds"] = time.perf_counter() - start
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.proc.memory_info().rss)
            out["peak_rss_gb"] = self.peak / 2**30
            out["peak_rss_over_start_gb"] = (self.peak - base) / 2**30


def timed_qps(fn: Callable[[], Any], n_queries: int, *, min_seconds: float = 1.0,
              windows: int = 3) -> tuple[float, Any]:
    """Queries per second of ``fn`` and its last result: the best of ``windows`` timing windows.

    Each window repeats ``fn`` for at least ``min_seconds / windows``; on a shared machine a busy
    moment then lowers one window instead of the whole measurement (as ``timeit`` takes the best).
    """
    result = fn()
    best = 0.0
    for _ in range(windows):
        reps, start = 0, time.perf_counter()
        while True:
            result = fn()
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / windows:
                break
        best = max(best, reps * n_queries / elapsed)
    return best, result


def recall(vs: data.VectorSet, q: npt.NDArray[np.float32], ids: npt.NDArray[np.int64],
           gt: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]) -> dict[str, float]:
    """Recall@10, strict (same ids) and tie-aware (equal exact scores count: duplicate spectra)."""
    from indexes.ground_truth import recall_at_k

    ids = np.asarray(ids, dtype=np.int64)[:, :K]
    vec = np.asarray(vs.vectors[np.maximum(ids, 0).reshape(-1)]).reshape(*ids.shape, -1)
    scores = np.einsum("qd,qkd->qk", q, vec).astype(np.float32)
    return {"recall@10": recall_at_k(ids, gt[1], K, found_scores=scores, true_scores=gt[0]),
            "recall@10_strict": recall_at_k(ids, gt[1], K)}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


# --------------------------------------------------------------------------------------------- stages

def bench_exact(vs: data.VectorSet, q: npt.NDArray[np.float32], mem: PeakRSS) -> tuple[dict[str, Any], Any]:
    from indexes.ground_truth import exact_knn

    with mem.measure() as m:
        gt_s, gt_i = exact_knn(q, vs.vectors, K)
    n, dim = vs.vectors.shape
    sub = q[: max(50, min(len(q), int(2e9 / (n * dim))))]  # about 2 GFLOP per timed call
    qps, _ = timed_qps(lambda: exact_knn(sub, vs.vectors, K), len(sub), min_seconds=2.0)
    row = {"method": "flat (exact)", "n_probe": None, "recall@10": 1.0, "qps": qps, "build_s": 0.0,
           "disk_bytes_per_vector": dim * 4, "ram_bytes_per_vector": dim * 4,
           "peak_rss_gb": m["peak_rss_gb"], "ground_truth_s": m["seconds"]}
    return row, (gt_s, gt_i)


def bench_faiss(kind: str, vs: data.VectorSet, q: npt.NDArray[np.float32], gt: Any,
                workdir: Path, mem: PeakRSS, probes: list[int], exact_qps: float) -> list[dict[str, Any]]:
    import faiss

    from indexes.faiss_ivf import IndexPolicy, build_ivf, index_nlist, load_index, save_index, search_ivf
    from indexes.ground_truth import topk_rows

    n, dim = vs.vectors.shape
    policy = IndexPolicy()
    with mem.measure() as m:
        index = build_ivf(vs.vectors, kind, policy, use_gpu=False)  # type: ignore[arg-type]
    nlist = index_nlist(index)
    path = workdir / f"{kind}-{n}.faiss"
    save_index(index, path)
    index = None
    gc.collect()
    index = load_index(path, mmap=False)
    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
    # resident size: codes + ids of the inverted lists, plus the coarse centroids
    ram = (n * (ivf.code_size + 8) + nlist * dim * 4) / n
    rows: list[dict[str, Any]] = []
    common = {"nlist": nlist, "build_s": m["seconds"], "build_peak_rss_gb": m["peak_rss_gb"],
              "disk_bytes_per_vector": path.stat().st_size / n, "ram_bytes_per_vector": ram}
    if kind == "ivf_pq":
        common["pq_m"] = policy.pq_m_for(dim)
    for probe in [p for p in probes if p <= nlist]:
        qps, (_, ids) = timed_qps(lambda p=probe: search_ivf(index, q, K, n_probe=p), len(q))
        rows.append({"method": kind.replace("_", "-").upper(), "n_probe": probe,
                     **recall(vs, q, ids, gt), "qps": qps, "speedup_vs_exact": qps / exact_qps,
                     **common})
        for factor in (4, 10) if kind == "ivf_pq" else ():
            # the library's path: over-fetch, re-score exactly from the stored vectors
            def rescored(p: int = probe, f: int = factor) -> Any:
                _, cand = search_ivf(index, q, K * f, n_probe=p)
                vec = np.asarray(vs.vectors[np.maximum(cand, 0).reshape(-1)]).reshape(*cand.shape, dim)
                s = np.einsum("qd,qkd->qk", q, vec)
                s[cand < 0] = -np.inf
                return topk_rows(s.astype(np.float32), cand.astype(np.int64), K)

            qps, (_, ids) = timed_qps(rescored, len(q))
            rows.append({"method": f"IVF-PQ + exact re-score (x{factor})", "n_probe": probe,
                         **recall(vs, q, ids, gt), "qps": qps, "speedup_vs_exact": qps / exact_qps,
                         **common})
    index = None
    mm = load_index(path, mmap=True)
    probe = policy.n_probe_for(nlist)
    qps, (_, ids) = timed_qps(lambda: search_ivf(mm, q, K, n_probe=probe), len(q))
    rows.append({"method": f"{kind.replace('_', '-').upper()} (mmap)", "n_probe": probe,
                 **recall(vs, q, ids, gt), "qps": qps, "speedup_vs_exact": qps / exact_qps,
                 **{**common, "ram_bytes_per_vector": nlist * dim * 4 / n}})
    mm = None
    path.unlink()
    return rows


def bench_lancedb(vs: data.VectorSet, q: npt.NDArray[np.float32], gt: Any, workdir: Path,
                  mem: PeakRSS, exact_qps: float) -> list[dict[str, Any]]:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    from indexes.faiss_ivf import IndexPolicy

    n, dim = vs.vectors.shape
    policy = IndexPolicy()
    nlist = policy.nlist_for(n)
    m_sub = policy.pq_m_for(dim)
    path = workdir / f"lancedb-{n}"
    shutil.rmtree(path, ignore_errors=True)
    db = lancedb.connect(str(path))
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim))])

    def batches() -> Iterator[pa.RecordBatch]:
        for s in range(0, n, 200_000):
            v = np.ascontiguousarray(vs.vectors[s:s + 200_000])
            yield pa.RecordBatch.from_arrays([pa.array(np.arange(s, s + v.shape[0])),
                                              pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)],
                                             schema=schema)

    with mem.measure() as w:
        table = db.create_table("vectors", data=pa.RecordBatchReader.from_batches(schema, batches()))
    with mem.measure() as m:
        table.create_index("vector", config=IvfPq(distance_type="dot", num_partitions=nlist,
                                                  num_sub_vectors=m_sub))
    index_bytes = sum(p.stat().st_size for p in (path / "vectors.lance" / "_indices").rglob("*") if p.is_file())
    rows = []
    for probe, refine in ((8, None), (32, None), (32, 4), (64, 4), (128, 4)):
        def run(p: int = probe, r: int | None = refine) -> Any:
            query = table.search(list(q)).limit(K).nprobes(p).select(["id", "_distance"])
            if r is not None:
                query = query.refine_factor(r)
            return query.to_arrow()

        qps, res = timed_qps(run, len(q))
        ids = np.full((len(q), K), -1, np.int64)
        qi = res.column("query_index").to_numpy()
        rank = np.zeros_like(qi)
        order = np.lexsort((res.column("_distance").to_numpy(), qi))
        qi, found = qi[order], res.column("id").to_numpy()[order]
        start = np.r_[0, np.flatnonzero(qi[1:] != qi[:-1]) + 1]
        rank = np.arange(qi.shape[0]) - np.repeat(start, np.diff(np.r_[start, qi.shape[0]]))
        ok = rank < K
        ids[qi[ok], rank[ok]] = found[ok]
        rows.append({"method": "LanceDB IVF_PQ" + (f" + refine x{refine}" if refine else ""), "n_probe": probe,
                     **recall(vs, q, ids, gt), "qps": qps, "speedup_vs_exact": qps / exact_qps,
                     "nlist": nlist, "pq_m": m_sub, "build_s": w["seconds"] + m["seconds"],
                     "index_build_s": m["seconds"], "build_peak_rss_gb": max(w["peak_rss_gb"], m["peak_rss_gb"]),
                     "disk_bytes_per_vector": index_bytes / n,
                     "table_disk_bytes_per_vector": dir_bytes(path) / n, "ram_bytes_per_vector": None})
    table = db = None
    shutil.rmtree(path, ignore_errors=True)
    return rows


def bench_library(vs: data.VectorSet, q: npt.NDArray[np.float32], q_mass: npt.NDArray[np.float64],
                  q_mode: npt.NDArray[np.bool_], workdir: Path, mem: PeakRSS, tag: str) -> list[dict[str, Any]]:
    """The partitioned library index through :func:`indexes.search.search` (what the queries use)."""
    import pyarrow as pa

    from engine.core.records import Tolerance
    from indexes.faiss_ivf import IndexPolicy
    from indexes.ground_truth import recall_at_k
    from indexes.vector_index import VectorIndex, build_vector_index

    n, dim = vs.vectors.shape
    out = workdir / f"library-{n}"
    shutil.rmtree(out, ignore_errors=True)
    modes = np.where(np.asarray(vs.ion_mode), "positive", "negative")
    light = pa.table({"row_id": np.arange(n, dtype=np.int64), "key": pa.nulls(n, pa.string()),
                      "mass": np.asarray(vs.precursor_mz), "ion_mode": modes, "quality": np.asarray(vs.quality)})

    def emb() -> Iterator[pa.RecordBatch]:
        for s in range(0, n, 200_000):
            v = np.ascontiguousarray(vs.vectors[s:s + 200_000])
            yield pa.RecordBatch.from_arrays([pa.array(np.arange(s, s + v.shape[0], dtype=np.int64)),
                                              pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)],
                                             names=["row_id", "embedding"])

    policy = IndexPolicy(target_partition_rows=max(1_000_000, n // 8))
    with mem.measure() as m:
        man = build_vector_index(out, light, emb, dim=dim, encoder_hash=tag, table="spectra",
                                 key_column="spectrum_id", mass_column="precursor_mz", table_rows=n, policy=policy)
    del light
    index = VectorIndex.open(out)
    kinds = sorted({p.kind for p in man.partitions})
    qmodes = list(np.where(q_mode, "positive", "negative"))
    rows = []
    cases = [("identity: 10 ppm window + ion mode", {"mass": q_mass, "tolerance": Tolerance(10, "ppm"),
                                                      "ion_mode": qmodes}),
             ("analogue: +-100 Da window + ion mode", {"mass": q_mass, "tolerance": Tolerance(100, "Da"),
                                                        "ion_mode": qmodes}),
             ("analogue: ion mode only", {"ion_mode": qmodes})]
    for name, kwargs in cases:
        truth = index.search(q, top_k=K, exact=True, **kwargs)
        qps, got = timed_qps(lambda kw=kwargs: index.search(q, top_k=K, **kw), len(q))
        t_ids, t_s = _id_matrix(truth, len(q))
        g_ids, g_s = _id_matrix(got, len(q))
        exact_qps, _ = timed_qps(lambda kw=kwargs: index.search(q, top_k=K, exact=True, **kw), len(q))
        rows.append({"search": name, "recall@10": recall_at_k(g_ids, t_ids, K, found_scores=g_s, true_scores=t_s),
                     "recall@10_strict": recall_at_k(g_ids, t_ids, K), "qps": qps,
                     "exact_qps": exact_qps, "hits_per_query": got.num_rows / len(q),
                     "partitions": len(man.partitions), "kinds": ",".join(kinds), "n_probe": man.policy.n_probe,
                     "build_s": m["seconds"], "build_peak_rss_gb": m["peak_rss_gb"],
                     "disk_bytes_per_vector": dir_bytes(out) / n})
    index = None
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _id_matrix(result: Any, nq: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    ids = np.full((nq, K), -1, np.int64)
    scores = np.full((nq, K), -np.inf, np.float32)
    qi, rank = result.column("query_index").to_numpy(), result.column("rank").to_numpy() - 1
    ids[qi, rank] = result.column("row_id").to_numpy()
    scores[qi, rank] = result.column("score").to_numpy()
    return ids, scores


def bench_append(workdir: Path, mem: PeakRSS) -> dict[str, Any]:
    """Idempotent appends of ~100k real spectra (with peaks) into the library ``spectra`` table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.core.schema import SPECTRUM_SCHEMA
    from engine.models.encoders.fixed import FixedSpectrumEmbedder
    from indexes.library import SPECTRA, Library, with_embeddings

    emb = FixedSpectrumEmbedder()
    names = ["spectrum_id", "precursor_mz", "charge", "ion_mode", "adduct", "name", "smiles", "inchikey",
             "formula", "collision_energy", "mz", "intensity"]
    table = pq.read_table(data.MASSBANK, columns=names)
    n = table.num_rows
    cols = {f.name: (table.column(f.name).cast(f.type) if f.name in names else pa.nulls(n, f.type))
            for f in SPECTRUM_SCHEMA}
    cols["source_file"] = pa.array(["massbank"] * n)
    cols["n_peaks"] = pa.array(np.diff(table.column("mz").combine_chunks().offsets.to_numpy()).astype(np.int32))
    spectra = pa.table(cols, schema=SPECTRUM_SCHEMA)
    batches = []
    for s in range(0, n, 10_000):
        b = spectra.slice(s, 10_000).combine_chunks().to_batches()[0]
        e, qual = emb.embed_spectra(b)
        batches.append(with_embeddings(b, e, qual))
    path = workdir / "append"
    shutil.rmtree(path, ignore_errors=True)
    lib = Library.create(path, dim=emb.dim, encoder_hash=emb.encoder_hash, layout=SPECTRA)
    with mem.measure() as first:
        inserted = sum(lib.add(b) for b in batches)
    with mem.measure() as again:
        reinserted = sum(lib.add(b) for b in batches)
    rows = lib.table.count_rows()
    with mem.measure() as idx:
        lib.table.ensure_key_index()
    with mem.measure() as again2:
        reinserted2 = sum(lib.add(b) for b in batches)
    out = {"spectra": n, "batch_rows": 10_000, "first_append_s": first["seconds"],
           "first_append_spectra_per_s": n / first["seconds"], "inserted": inserted,
           "re_append_s": again["seconds"], "re_inserted": reinserted, "rows_after": rows,
           "btree_index_s": idx["seconds"], "re_append_with_btree_s": again2["seconds"],
           "re_inserted_with_btree": reinserted2, "table_disk_bytes_per_spectrum": dir_bytes(path) / n}
    shutil.rmtree(path, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated database sizes")
    ap.add_argument("--dim", type=int, default=128, help="fixed-embedder dimension")
    ap.add_argument("--embedder", choices=["fixed", "model"], default="fixed")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--workdir", default="/tmp/engine-bench-index")
    ap.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all cores)")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip: lancedb,library,append,ivf_pq")
    ap.add_argument("--probes", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--rewrite", action="store_true", help="only rewrite RESULTS.md from results.json")
    args = ap.parse_args()
    if args.rewrite:
        write(json.loads(JSON.read_text()))
        return
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mem = PeakRSS()
    if args.embedder == "model":
        embed, enc_hash, dim = data.model_embed()
        tag = f"model-{enc_hash[:8]}"
    else:
        embed, enc_hash = data.fixed_embed(args.dim)
        dim, tag = args.dim, f"fixed{args.dim}"
    results = json.loads(JSON.read_text()) if JSON.exists() else {}
    results.setdefault("runs", {})
    results["calibration"] = results.get("calibration") or {}
    if tag not in results["calibration"]:
        results["calibration"][tag] = data.calibration(embed)
    q, q_mass, q_mode = data.queries(embed, args.queries)
    probes = [int(p) for p in args.probes.split(",")]
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"== {n:,} vectors of dimension {dim} ({tag})", flush=True)
        with mem.measure() as g:
            vs = data.build_vector_set(workdir, n, embed, tag)
        run: dict[str, Any] = {"n": n, "dim": dim, "embedder": tag, "encoder_hash": enc_hash,
                               "load_average_at_start": os.getloadavg()[0],
                               "queries": len(q), "threads": args.threads or os.cpu_count(),
                               "timing": TIMING,
                               "generate_s": g["seconds"], "rows": []}
        exact_row, gt = bench_exact(vs, q, mem)
        run["rows"].append(exact_row)
        print(f"   exact: {exact_row['qps']:.0f} q/s; ground truth {exact_row['ground_truth_s']:.1f} s", flush=True)
        for kind in ("ivf_flat", "ivf_pq"):
            if kind in skip:
                continue
            rows = bench_faiss(kind, vs, q, gt, workdir, mem, probes, exact_row["qps"])
            run["rows"] += rows
            best = [r for r in rows if r["recall@10"] >= 0.95]
            print(f"   {kind}: built in {rows[0]['build_s']:.0f} s; "
                  + (f"recall {best[0]['recall@10']:.3f} at n_probe {best[0]['n_probe']}, {best[0]['qps']:.0f} q/s"
                     if best else "recall < 0.95"), flush=True)
        if "lancedb" not in skip:
            run["rows"] += bench_lancedb(vs, q, gt, workdir, mem, exact_row["qps"])
            print("   lancedb done", flush=True)
        if "library" not in skip:
            run["library"] = bench_library(vs, q, q_mass, q_mode, workdir, mem, tag)
            print("   library search done", flush=True)
        run["load_average_at_end"] = os.getloadavg()[0]
        results["runs"][f"{tag}-{n}"] = run
        write(results)
        del vs
        gc.collect()
    if "append" not in skip and "append" not in results:
        results["append"] = bench_append(workdir, mem)
        write(results)


def normalise_exact(run: dict[str, Any]) -> None:
    """Exact queries/s = the better of its two measurements (timed subset, ground-truth pass).

    On a shared machine one short timing can catch a busy moment; speed-ups are recomputed from it.
    """
    exact = next(r for r in run["rows"] if r["method"] == "flat (exact)")
    exact["qps"] = max(exact["qps"], run["queries"] / exact.get("ground_truth_s", float("inf")))
    for r in run["rows"]:
        if "speedup_vs_exact" in r:
            r["speedup_vs_exact"] = r["qps"] / exact["qps"]


def describe_embedders(runs: list[dict[str, Any]]) -> str:
    """One sentence per embedder tag present in ``runs``."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        seen.setdefault(r["embedder"], r)
    out = []
    for tag, r in seen.items():
        if tag.startswith("model-"):
            out.append(f"`{tag}` = the bundled default model (`engine/data/model/default.pt`, encoder hash "
                       f"`{r['encoder_hash']}`, dimension {r['dim']}, trained on the MassBank `train` split; "
                       "see its model card): real trained-model embeddings, so at 100k the table is the "
                       "89,284 real MassBank spectra plus 10,716 perturbed copies.")
        else:
            out.append(f"`{tag}` = the training-free binned-peak embedder (`engine/models/encoders/fixed.py`) at "
                       f"dimension {r['dim']}.")
    return " ".join(out)


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run and method: the smallest n_probe reaching recall@10 >= 0.95 (else the best recall)."""
    methods = ["flat (exact)", "IVF-FLAT", "IVF-PQ", "IVF-PQ + exact re-score (x10)", "LanceDB IVF_PQ + refine x4"]
    out = []
    for r in runs:
        for method in methods:
            rows = sorted((x for x in r["rows"] if x["method"] == method), key=lambda x: x["n_probe"] or 0)
            if not rows:
                continue
            good = [x for x in rows if x["recall@10"] >= 0.95]
            pick = good[0] if good else max(rows, key=lambda x: x["recall@10"])
            out.append({"vectors": f"{r['n']:,}", "embedder": r["embedder"], "speedup_vs_exact": 1.0, **pick,
                        "build_peak_rss_gb": pick.get("build_peak_rss_gb", pick.get("peak_rss_gb"))})
    return out


def write(results: dict[str, Any]) -> None:
    for run in results["runs"].values():
        normalise_exact(run)
    runs = sorted(results["runs"].values(), key=lambda r: (r["embedder"], r["n"]))
    lance = [r for r in runs if any(x["method"].startswith("LanceDB") for x in r["rows"])]
    no_lance = [r for r in runs if r not in lance]
    parts = [
        "Vectors: real MassBank spectra (89,284) first, then perturbed copies re-embedded (peak dropout "
        "weighted to weak peaks, 5 ppm m/z jitter, log-normal intensity noise, Poisson(2) noise peaks, "
        "3 ppm precursor shift; `benchmarks/index/data.py`). Queries: 1,000 freshly perturbed "
        "validation-split spectra. Recall@10 is against exact inner-product search over the same vectors "
        "(tie-aware: a duplicate with the same exact score counts; `recall@10_strict` counts ids only). "
        + describe_embedders(runs),
        "All figures are CPU FAISS on the 2 cores of this machine, shared with other engineers' jobs "
        "(the load average at the start and end of each size is in its heading; a load above 2 means "
        "the benchmark had less than both cores, so queries/s are conservative). `build_peak_rss_gb` is "
        "the process's peak resident memory during the build; it includes the pages of the memory-mapped "
        "input vectors that were read (file-backed, reclaimable), so it overstates what the index needs.",
    ]
    if lance and no_lance:
        ref = max(lance, key=lambda r: r["n"])
        build = next(x["build_s"] for x in ref["rows"] if x["method"].startswith("LanceDB"))
        parts.append(
            "LanceDB's own IVF_PQ index is compared side by side at "
            + ", ".join(f"{r['n']:,} ({r['embedder']})" for r in lance)
            + ". It was not run at " + ", ".join(f"{r['n']:,} ({r['embedder']})" for r in no_lance)
            + f": at {ref['n']:,} its table + index build took {build:,.0f} s on these cores and grows "
            f"about linearly with the rows (~{build * max(r['n'] for r in no_lance) / ref['n'] / 60:,.0f} "
            "min expected). At 100k LanceDB logs that it trains only 390 of the 2048 requested IVF "
            "partitions (its cap is about one partition per 256 rows), so its n_probe there is not "
            "comparable with FAISS's.")
    no_lib = [r for r in runs if not r.get("library")]
    if no_lib:
        parts.append("The partitioned library index stage was skipped at "
                     + ", ".join(f"{r['n']:,} ({r['embedder']})" for r in no_lib)
                     + " (it rebuilds the vectors as ion-mode x mass partitions with one IVF index each and "
                       "times exact searches over whole ion modes; it ran at the other sizes).")
    for r in runs:
        pq = [x["recall@10"] for x in r["rows"] if x["method"] == "IVF-PQ + exact re-score (x10)"]
        if pq and max(pq) < 0.95:
            parts.append(
                f"At {r['n']:,} ({r['embedder']}) IVF-PQ + exact re-score (x10) levels off at recall@10 "
                f"{max(pq):.2f} however many lists are probed: the 100-candidate shortlist ordered by the "
                f"{r['dim'] // 4}-byte PQ codes misses true neighbours. Each real spectrum has about "
                f"{r['n'] // 89_284} perturbed copies here, and the codes cannot order such near-duplicates; "
                "the library keeps partitions at 2M rows or fewer (where IVF-PQ + re-score reaches 0.95 "
                "at 1M) and a partition this large would need a larger over-fetch or IVF-Flat.")
    parts.append("Summary (per size and method, the smallest n_probe reaching recall@10 >= 0.95, else the best "
                 "recall measured; speed-up against exact search of the same size):\n\n"
                 + markdown_table(summary_rows(runs), ["vectors", "embedder", "method", "n_probe", "nlist",
                                                       "recall@10", "qps", "speedup_vs_exact", "build_s",
                                                       "ram_bytes_per_vector", "disk_bytes_per_vector",
                                                       "build_peak_rss_gb"]))
    cal = results.get("calibration", {})
    if cal:
        parts.append("Perturbation vs real replicates (cosine of a spectrum to its perturbed copy vs to a "
                     "replicate with the same structure, adduct, instrument type and collision energy):\n\n"
                     + markdown_table([{"embedder": k, **v} for k, v in cal.items()]))
    cols = ["method", "n_probe", "nlist", "recall@10", "recall@10_strict", "qps", "speedup_vs_exact", "build_s",
            "disk_bytes_per_vector", "ram_bytes_per_vector", "build_peak_rss_gb"]
    for r in runs:
        load = f"load average {r.get('load_average_at_start', 0):.1f} -> {r.get('load_average_at_end', 0):.1f}"
        load += f"; queries/s {r['timing']}" if r.get("timing") else ""
        parts.append(f"### {r['n']:,} vectors, dim {r['dim']} ({r['embedder']}, {r['threads']} threads, {load})\n\n"
                     + markdown_table(r["rows"], cols))
        if r.get("library"):
            parts.append("Partitioned library index (`indexes.search.search`, exact cosines returned):\n\n"
                         + markdown_table(r["library"], ["search", "recall@10", "recall@10_strict", "qps", "exact_qps",
                                                         "hits_per_query", "partitions", "kinds", "n_probe",
                                                         "build_s", "disk_bytes_per_vector"]))
    if results.get("append"):
        parts.append("Idempotent appends into the library `spectra` table (LanceDB `merge_insert` on "
                     "`spectrum_id`, batches of 10,000 with peaks and embeddings):\n\n"
                     + markdown_table([results["append"]]))
    write_results(name="index", title="Vector store: FAISS flat / IVF-Flat / IVF-PQ vs LanceDB IVF_PQ",
                  body_markdown="\n\n".join(parts), data=results, json_path=JSON)


if __name__ == "__main__":
    main()
