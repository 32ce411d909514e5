"""GPU against CPU, same script, same data (issue 19): spectrum and molecule embedding, FAISS IVF build and
search, ``engine annotate`` end to end, one training epoch.

Every measurement runs once per device of ``--devices`` (default ``cpu cuda``). On a machine where torch
sees no CUDA device the GPU columns stay empty with "no GPU on this machine"; FAISS GPU rows say so when
FAISS has no GPU support. Nothing is estimated. See ``benchmarks/gpu/README.md`` for the command a GPU
session runs and what it must bring along.

    nice -n 10 python -m benchmarks.gpu.run --quick          # minutes on a loaded 2-core machine (CPU column)
    python -m benchmarks.gpu.run --sizes 1M,10M ...          # the GPU session's command: see GPU_COMMAND

Data: real MassBank spectra (``DATA/massbank/spectra.parquet``) through the benchmark readers of
``benchmarks/index/data.py``; the MGF for ``engine annotate`` comes from ``benchmarks/annotate``'s
generator; index vectors are the model's embeddings of the real spectra, perturbed (Gaussian noise of
norm ``~0.3``) and renormalised, tiled to each size of ``--sizes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._results import ROOT, markdown_table, write_results

HERE = Path(__file__).resolve().parent
PARTS = ("embed", "molecules", "index", "train", "annotate")  # the longest last: a run cut short keeps the rest
NO_GPU = "no GPU on this machine"
#: the training data cache (its key holds this string, so a GPU session that carries the folder reuses it)
TRAIN_CACHE = "benchmarks/gpu/work/cache"
K = 10
#: the MassBank columns this script and the training data preparation read (``--export-data`` keeps these)
DATA_COLUMNS = ("spectrum_id", "mz", "intensity", "precursor_mz", "ion_mode", "adduct", "smiles", "split",
                "license", "inchikey14", "instrument_type", "collision_energy", "precursor_ppm_error",
                "legacy_blacklisted", "murcko_scaffold", "formula", "exact_mass")

Result = dict[str, Any]


def parse_size(text: str) -> int:
    """``1M`` / ``100k`` / ``250000`` -> rows."""
    t = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def gpu_memory_gb(device: str) -> float | None:
    """Peak torch GPU memory since the last reset (GiB), None on the CPU."""
    if device != "cuda":
        return None
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 3)


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` (device synchronised) and its result."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


# ------------------------------------------------------------------------------------------------ parts

class Bench:
    """The parts, sharing data (spectra, embeddings, vectors) across devices."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.spectra_path: Path = args.data / "massbank" / "spectra.parquet"
        self._peaks: Any = None
        self.reference: dict[str, Any] = {}   # CPU outputs that the GPU outputs are compared with

    def model(self, device: str) -> Any:
        from engine.jobs.artifacts import open_model
        from engine.models.device import resolve_device

        return open_model(self.args.model, device=resolve_device(device))

    def peaks(self) -> Any:
        if self._peaks is None:
            from benchmarks.index.data import load_massbank

            self._peaks, _ = load_massbank(self.spectra_path)
        return self._peaks

    # -- spectrum embedding ----------------------------------------------------------------------
    def embed(self, device: str) -> Result:
        real = self.peaks()
        n = self.args.embed_spectra
        batch = real.take(np.arange(n) % len(real)).to_batch()
        model = self.model(device)
        model.embed_spectra(batch.slice(0, min(n, 2048)), batch_size=self.args.batch_size)  # warm-up
        gpu_memory_gb(device)
        seconds, (emb, _) = timed(lambda: model.embed_spectra(batch, batch_size=self.args.batch_size), device)
        out: Result = {"n": n, "seconds": seconds, "rate": n / seconds, "unit": "spectra/s",
                       "batch_size": self.args.batch_size, "gpu_memory_gb": gpu_memory_gb(device)}
        uniq = emb[:min(n, len(real))]
        if "embeddings" in self.reference:
            ref = self.reference["embeddings"][:len(uniq)]
            out["min_cosine_vs_cpu"] = float(np.min(np.sum(ref * uniq, axis=1)))
            out["max_abs_diff_vs_cpu"] = float(np.max(np.abs(ref - uniq)))
        else:
            self.reference["embeddings"] = uniq
        return out

    # -- molecule embedding ----------------------------------------------------------------------
    def molecules(self, device: str) -> Result:
        import pyarrow.parquet as pq

        from engine.models.encoders.featurize import GraphStore, featurize

        if "graphs" not in self.reference:
            smiles = sorted({s for s in pq.read_table(self.spectra_path, columns=["smiles"]).column("smiles")
                             .to_pylist() if s})
            t = time.perf_counter()
            graphs = [featurize(s) for s in smiles]
            self.reference["featurize_rate"] = len(graphs) / (time.perf_counter() - t)
            self.reference["graphs"] = graphs
        graphs = self.reference["graphs"]
        n = self.args.molecules
        store = GraphStore.from_graphs([graphs[i % len(graphs)] for i in range(n)])
        model = self.model(device)
        model.embed_graphs(GraphStore.from_graphs(graphs[:256]), batch_size=self.args.batch_size)  # warm-up
        gpu_memory_gb(device)
        seconds, emb = timed(lambda: model.embed_graphs(store, batch_size=self.args.batch_size), device)
        rate = n / seconds
        feat = self.reference["featurize_rate"]
        out: Result = {"n": n, "seconds": seconds, "rate": rate, "unit": "molecules/s",
                       "featurize_rate_cpu": feat, "end_to_end_rate": 1.0 / (1.0 / feat + 1.0 / rate),
                       "gpu_memory_gb": gpu_memory_gb(device)}
        first = emb[:min(n, len(graphs))]
        if "molecules" in self.reference:
            out["min_cosine_vs_cpu"] = float(np.min(np.sum(self.reference["molecules"] * first, axis=1)))
        else:
            self.reference["molecules"] = first
        return out

    # -- FAISS IVF ---------------------------------------------------------------------------------
    def vectors(self, n: int, seed: int) -> npt.NDArray[np.float32]:
        """``n`` perturbed copies of the model's embeddings of the real spectra (unit length)."""
        base = self.reference.get("embeddings")
        if base is None:
            base = self.model("cpu").embed_spectra(self.peaks().to_batch(), batch_size=self.args.batch_size)[0]
            self.reference["embeddings"] = base
        dim = base.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 1_000_000):
            rng = np.random.default_rng((seed, start))
            m = min(1_000_000, n - start)
            v = base[rng.integers(0, base.shape[0], m)] + rng.standard_normal((m, dim), np.float32) * (0.3 / dim**0.5)
            out[start:start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    def index(self, device: str) -> list[Result]:
        from indexes.faiss_ivf import gpu_count

        if device == "cuda" and gpu_count() == 0:
            return [{"size": s, "skipped": "FAISS without GPU support here (faiss-cpu; install the gpu extra)"}
                    for s in self.args.sizes]
        rows: list[Result] = []
        queries = self.vectors(self.args.queries, seed=99)
        for size in self.args.sizes:
            if self.reference.get("vectors_n") != size:
                self.reference.pop("vectors", None)
                self.reference["vectors"] = self.vectors(size, seed=1)
                self.reference["vectors_n"] = size
            rows.append(self.index_one(self.reference["vectors"], queries, device))
        return rows

    def index_one(self, vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], device: str) -> Result:
        """Build one IVF index of ``vectors`` on ``device`` and time batched top-10 search of ``queries``."""
        import faiss

        from indexes.faiss_ivf import IndexPolicy, build_ivf, index_nlist, search_ivf, to_gpu

        policy = IndexPolicy()
        size = vectors.shape[0]
        kind = policy.kind_for(size, vectors.shape[1])
        kind = "ivf_flat" if kind == "flat" else kind
        build_s, index = timed(lambda: build_ivf(vectors, kind, policy, use_gpu=device == "cuda"), device)
        nlist = index_nlist(index)
        n_probe = policy.n_probe_for(nlist)
        to_gpu_s = None
        search: Callable[[], Any]
        if device == "cuda":
            to_gpu_s, searcher = timed(lambda: to_gpu(index), device)
            faiss.GpuParameterSpace().set_index_parameter(searcher, "nprobe", n_probe)
            search = lambda: searcher.search(queries, K)  # noqa: E731
        else:
            search = lambda: search_ivf(index, queries, K, n_probe=n_probe)  # noqa: E731
        search()  # warm-up
        reps, t = 0, time.perf_counter()
        while True:
            _, ids = search()
            reps += 1
            if time.perf_counter() - t >= self.args.min_search_s:
                break
        qps = reps * len(queries) / (time.perf_counter() - t)
        row: Result = {"size": size, "kind": kind, "nlist": nlist, "n_probe": n_probe, "build_s": build_s,
                       "build_rate": size / build_s, "queries": len(queries), "qps": qps, "to_gpu_s": to_gpu_s}
        key = f"ids-{size}"
        if key in self.reference:
            overlap = [len(set(a) & set(b)) / K for a, b in zip(self.reference[key], ids, strict=True)]
            row["top10_overlap_vs_cpu"] = float(np.mean(overlap))
        else:
            self.reference[key] = ids
        return row

    # -- engine annotate -------------------------------------------------------------------------
    def annotate(self, device: str) -> Result:
        from benchmarks.annotate.run import write_large_mgf

        n = self.args.annotate_spectra
        mgf = write_large_mgf(self.args.data, self.work / f"massbank_{n}.mgf", n)
        out = self.work / f"annotate-{device}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "engine", "annotate", str(mgf), "--out", str(out), "--quiet",
               "--device", device]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            return {"error": ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1][:300]}
        summary = json.loads((out / "summary.json").read_text())
        shutil.rmtree(out, ignore_errors=True)
        return {"n": summary["annotated"], "seconds": wall, "rate": summary["annotated"] / wall,
                "unit": "spectra/s", "stages_s": {k: v for k, v in summary["seconds"].items() if k != "total"},
                "identity_hits": summary["identity_hits"]}

    # -- one training epoch ----------------------------------------------------------------------
    def train_config(self, device: str) -> Any:
        from engine.models.training.config import load_train_config

        cfg = load_train_config(self.args.train_config)
        pool = {} if self.args.negative_pool is None else {"negative_pool": self.args.negative_pool}
        data = dataclasses.replace(cfg.data, cache_dir=TRAIN_CACHE, **pool,
                                   **({"max_train_structures": self.args.train_structures,
                                       "max_val_structures": max(50, self.args.train_structures // 8)}
                                      if self.args.train_structures else {}))
        return dataclasses.replace(cfg, name=f"gpu-bench-{device}", out_dir=str(self.work / "train"), data=data,
                                   train=dataclasses.replace(cfg.train, device=device))  # type: ignore[arg-type]

    def train(self, device: str) -> Result:
        from engine.models.model import model_pipeline
        from engine.models.training.data import prepare_data
        from engine.models.training.loop import train

        cfg = self.train_config(device)
        if "train_prepare_s" not in self.reference:
            t = time.perf_counter()
            prepare_data(cfg.data, model_pipeline(), seed=cfg.seed)  # built once and cached (CPU)
            self.reference["train_prepare_s"] = time.perf_counter() - t
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
        result = train(cfg, stop_after_epochs=1, progress=False)
        shutil.rmtree(cfg.run_dir, ignore_errors=True)
        first = result.history[0]
        return {"seconds": float(first["seconds"]), "rate": 1.0 / float(first["seconds"]), "unit": "epochs/s",
                "config": str(self.args.train_config), "train_structures": cfg.data.max_train_structures,
                "negative_pool": cfg.data.negative_pool, "data_prepare_s": self.reference["train_prepare_s"],
                "loss": first.get("loss")}


# --------------------------------------------------------------------------------------------- report

def run_part(bench: Bench, part: str, device: str) -> list[Result]:
    """One part on one device, as rows; a failure is recorded, not raised (the other parts still run)."""
    if device == "cuda" and not cuda_available():
        return [{"skipped": NO_GPU}]
    load = load_avg()
    t = time.perf_counter()
    try:
        out = getattr(bench, part)(device)
    except Exception as exc:  # a benchmark records what broke and goes on
        out = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    rows = out if isinstance(out, list) else [out]
    for r in rows:
        r.setdefault("load_start", load)
        r["load_end"] = load_avg()
        r["part_wall_s"] = round(time.perf_counter() - t, 1)
    print(part, device, rows, flush=True)
    return rows


def fmt_rate(r: Result | None, key: str = "rate") -> str:
    if r is None:
        return ""
    if "skipped" in r:
        return f"({r['skipped']})"
    if "error" in r:
        return f"error: {r['error']}"
    v = r.get(key)
    return "" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.3g}")


def table(results: dict[str, Any]) -> list[dict[str, str]]:
    """Rows measure | size | CPU | GPU | GPU / CPU."""
    runs = results["runs"]
    out = []

    def add(label: str, size: str, cpu: Result | None, gpu: Result | None, key: str = "rate",
            note: str = "") -> None:
        ratio = ""
        if cpu and gpu and isinstance(cpu.get(key), float) and isinstance(gpu.get(key), float) and cpu[key]:
            ratio = f"{gpu[key] / cpu[key]:.1f}x"
        out.append({"measure": label, "size": size, "CPU": fmt_rate(cpu, key), "GPU": fmt_rate(gpu, key),
                    "GPU / CPU": ratio, "note": note})

    def pick(part: str, device: str, i: int = 0) -> Result | None:
        rows = runs.get(part, {}).get(device)
        return rows[i] if rows and i < len(rows) else (rows[0] if rows and "skipped" in rows[0] else None)

    if "embed" in runs:
        c, g = pick("embed", "cpu"), pick("embed", "cuda")
        note = f"batch {(c or g or {}).get('batch_size', '')}"
        if g and "min_cosine_vs_cpu" in g:
            note += f"; GPU vs CPU min cosine {g['min_cosine_vs_cpu']:.6f}"
        add("spectrum embedding, spectra/s", f"{(c or {}).get('n', '')}", c, g, note=note)
    if "molecules" in runs:
        c, g = pick("molecules", "cpu"), pick("molecules", "cuda")
        feat = (c or g or {}).get("featurize_rate_cpu")
        add("molecule embedding (graph encoder), molecules/s", f"{(c or {}).get('n', '')}", c, g,
            note=f"RDKit featurising (CPU, both columns): {feat:,.0f} molecules/s" if feat else "")
        add("molecule embedding from SMILES (featurise + encode), molecules/s", "", c, g, key="end_to_end_rate")
    if "index" in runs:
        for i, size in enumerate(results["settings"]["sizes"]):
            c, g = pick("index", "cpu", i), pick("index", "cuda", i)
            kind = (c or g or {}).get("kind", "")
            note = f"{kind}, nlist {(c or g or {}).get('nlist', '')}, n_probe {(c or g or {}).get('n_probe', '')}"
            if g and "top10_overlap_vs_cpu" in g:
                note += f"; GPU top-10 = CPU top-10 for {100 * g['top10_overlap_vs_cpu']:.1f}% of hits"
            add("FAISS IVF build, vectors/s", f"{size:,}", c, g, key="build_rate", note=note)
            add("FAISS IVF search, queries/s (top 10)", f"{size:,}", c, g, key="qps",
                note=f"{(c or g or {}).get('queries', '')} queries per batch")
    if "annotate" in runs:
        c, g = pick("annotate", "cpu"), pick("annotate", "cuda")
        add("engine annotate end to end (MGF), spectra/s", f"{(c or {}).get('n', '')}", c, g,
            note="local runner, 1 process; wall time incl. start-up")
    if "train" in runs:
        c, g = pick("train", "cpu"), pick("train", "cuda")
        out.append({"measure": "one training epoch, seconds (incl. validation)",
                    "size": f"<= {(c or g or {}).get('train_structures', '')} structures",
                    "CPU": fmt_rate(c, "seconds"), "GPU": fmt_rate(g, "seconds"),
                    "GPU / CPU": (f"{c['seconds'] / g['seconds']:.1f}x faster" if c and g and "seconds" in c
                                  and "seconds" in g else ""),
                    "note": f"{Path(str((c or g or {}).get('config', ''))).name}, hard-negative pool "
                            f"{(c or g or {}).get('negative_pool', '')}; data preparation (CPU, 0 when cached) "
                            f"{(c or g or {}).get('data_prepare_s', 0):.0f} s, not counted"})
    return out


def body(results: dict[str, Any]) -> str:
    gpu = results["gpu"]
    mode = "quick (small sizes, proves the script)" if results["settings"]["quick"] else "full"
    label = (f"**GPU numbers: {gpu}** (same script, same data, both columns on this machine)." if gpu else
             f"**No GPU numbers yet: {NO_GPU}.** The GPU column is left empty rather than estimated; "
             "a session with a GPU runs the command below once.")
    loads = [r.get(k) for part in results["runs"].values() for rows in part.values() for r in rows
             for k in ("load_start", "load_end") if r.get(k) is not None]
    load = f"load average {min(loads):.1f} to {max(loads):.1f}" if loads else ""
    return (f"{label} Mode: {mode}; {load} on {os.cpu_count()} cores (shared machine: CPU figures are "
            f"lower bounds).\n\n" + markdown_table(table(results)) +
            "\n\nSpectra: real MassBank (repeated to the size); molecules: MassBank's structures (graphs "
            "featurised once by RDKit on the CPU, then encoded); index vectors: the model's embeddings of "
            "MassBank, perturbed and renormalised; GPU FAISS builds on the GPU and saves a CPU index, "
            "searched on a GPU copy (float16 lookup tables). Each GPU figure is beside the CPU figure of the "
            "same run.\n\nGPU command (a machine with CUDA torch and GPU FAISS; see "
            "`benchmarks/gpu/README.md`):\n\n```\n" + GPU_COMMAND + "\n```")


GPU_COMMAND = ("PYTHONUNBUFFERED=1 python -m benchmarks.gpu.run --sizes 1M,10M --embed-spectra 200000 "
               "--molecules 100000 --annotate-spectra 1000000 --train-structures 2000 --negative-pool 0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU proof of the script)")
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--sizes", default=None, help="index sizes, e.g. 1M,10M (default; --quick: 100k)")
    ap.add_argument("--queries", type=int, default=None, help="search queries (default 10000; --quick 2000)")
    ap.add_argument("--min-search-s", type=float, default=1.0, help="repeat searches for at least this long")
    ap.add_argument("--embed-spectra", type=int, default=None, help="default 200000; --quick 20000")
    ap.add_argument("--molecules", type=int, default=None, help="default 100000; --quick 5000")
    ap.add_argument("--annotate-spectra", type=int, default=None, help="default 1000000; --quick 2000")
    ap.add_argument("--batch-size", type=int, default=4096, help="model batch size (spectra / molecules)")
    ap.add_argument("--train-config", type=Path, default=None,
                    help="default configs/default.toml; --quick configs/smoke.toml")
    ap.add_argument("--negative-pool", type=int, default=None,
                    help="hard-negative pool per structure (default: the config's; 0 needs no candidate file)")
    ap.add_argument("--export-data", type=Path, default=None, metavar="DIR",
                    help="run nothing: write DIR/massbank/spectra.parquet with only the columns used (to carry)")
    ap.add_argument("--train-structures", type=int, default=None,
                    help="training structures (data subset; default 1000; --quick the smoke config's 400)")
    args = ap.parse_args()
    q = args.quick
    args.sizes = [parse_size(s) for s in (args.sizes or ("100k" if q else "1M,10M")).split(",")]
    args.queries = args.queries or (2000 if q else 10_000)
    args.embed_spectra = args.embed_spectra or (20_000 if q else 200_000)
    args.molecules = args.molecules or (5_000 if q else 100_000)
    args.annotate_spectra = args.annotate_spectra or (2_000 if q else 1_000_000)
    args.train_config = args.train_config or ROOT / "configs" / ("smoke.toml" if q else "default.toml")
    if args.train_structures is None:
        args.train_structures = 0 if q else 1000
    if args.export_data:
        export_data(args.data / "massbank" / "spectra.parquet", args.export_data / "massbank" / "spectra.parquet")
        return
    args.work.mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    bench = Bench(args)
    runs: dict[str, dict[str, list[Result]]] = {}
    gpu = None
    if cuda_available():
        import torch

        gpu = torch.cuda.get_device_name(0)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for part in parts:
        for device in args.devices:  # CPU first: the GPU rows are compared with its outputs
            runs.setdefault(part, {})[device] = run_part(bench, part, device)
        results = {"gpu": gpu, "settings": settings, "runs": runs}  # written after each part
        write_results("gpu", "GPU against CPU (issue 19)", body(results), results, HERE / "results.json")


def export_data(source: Path, target: Path) -> None:
    """A smaller copy of MassBank with only :data:`DATA_COLUMNS` (zstd), for a machine without ``../shared``."""
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(source, columns=list(DATA_COLUMNS)), target, compression="zstd",
                   compression_level=19)
    print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
