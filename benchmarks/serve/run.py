"""Repository service benchmark: build a repository in 10 "datasets", then serve lookups over loopback.

    nice -n 10 python -m benchmarks.serve.run --size 1000000          # ~15 min on 2 shared cores
    nice -n 10 python -m benchmarks.serve.run --size 100000 --seconds 10   # a quick one

Build: ``--size`` spectra in ``--datasets`` equal datasets of 10 files each, added one dataset after
the other through :class:`engine.jobs.repository.RepositoryWriter` (the code path of ``engine repository
add``: LanceDB table with peaks keyed by USI, file ledger, index append, stale partitions retrained).
Rows are perturbed copies of the 89,284 real MassBank spectra: the real spectra are embedded once with
the bundled model, and each copy's vector is its source's plus Gaussian noise scaled so that the median
cosine to the source equals that of a re-embedded perturbed copy (0.964, measured by
``benchmarks/index``), its precursor shifted by N(0, 3 ppm) and its peaks those of the source. So the
build time excludes embedding; the model's embedding throughput is measured on the real spectra and
reported beside it.

Serve: ``engine serve`` in a subprocess on 127.0.0.1; 1, 8 and 32 client threads with keep-alive
connections send lookups for ``--seconds`` or ``--requests`` (whichever ends first): spectrum lookups
(JSON peaks of freshly perturbed validation-split spectra, analogue mode, top 10; the server embeds them)
and USI lookups (a random repository spectrum, analogue, top 10). Reported: lookups/s, p50 / p99
latency, errors, the CPU the server used (cores: its CPU seconds over the wall time) and the server's
memory: resident (RSS, which counts the touched pages of
memory-mapped files), anonymous (RssAnon: heap, model, codes loaded into memory) and, with
``--memory-limit-gb``, the peak of a memory cgroup the server runs in (Linux; page cache it reads is
charged to it and reclaimed at the limit, so lookups are measured under that limit). The page cache is
dropped before the server starts where the machine allows it, so it starts cold.

    nice -n 10 python -m benchmarks.serve.run --size 10000000 --growth-only-retrain --memory-limit-gb 8 --keep
    python -m benchmarks.serve.run --size 10000000 --memory-limit-gb 8 --serve-only   # serve a kept repository
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
import pyarrow as pa

from benchmarks._results import commit, machine, markdown_table, write_results
from benchmarks.index import data

HERE = Path(__file__).resolve().parent
JSON = HERE / "results.json"
ROOT = HERE.parents[1]
PERTURBED_COSINE = 0.964  # median cosine of a re-embedded perturbed copy to its source (benchmarks/index)
FILES_PER_DATASET = 10
TITLE = "Repository service (engine serve): build and lookups over loopback"


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def real_embeddings(workdir: Path, real: data.Peaks, model: Any) -> tuple[npt.NDArray[np.float32],
                                                                            npt.NDArray[np.float32], float]:
    """Model embeddings of the real spectra (cached in ``workdir``) and the embedding rate (spectra/s)."""
    cache = workdir / f"real-{model.encoder_hash[:8]}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["emb"], z["quality"], float(z["rate"])
    start = time.perf_counter()
    emb, quality = model.embed_spectra(real.to_batch(), batch_size=2048)
    rate = len(real) / (time.perf_counter() - start)
    np.savez(cache, emb=emb, quality=quality, rate=rate)
    return np.asarray(emb, np.float32), np.asarray(quality, np.float32), rate


def perturbed_vectors(emb: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """``emb`` plus isotropic noise whose expected cosine to ``emb`` is :data:`PERTURBED_COSINE`."""
    dim = emb.shape[1]
    sigma = np.sqrt((1 / PERTURBED_COSINE**2 - 1) / dim)
    out = emb + rng.normal(0, sigma, emb.shape).astype(np.float32)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def dataset_batches(j: int, n: int, real: data.Peaks, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
                    seed: int) -> Any:
    """The files of dataset ``j``: (file name, batch, embeddings, quality), ``n`` rows in all."""
    rng = np.random.default_rng((seed, j))
    per_file = -(-n // FILES_PER_DATASET)
    accession = f"MSV9{j:08d}"
    for f in range(FILES_PER_DATASET):
        m = min(per_file, n - f * per_file)
        if m <= 0:
            return
        src = rng.integers(0, len(real), m)
        peaks = real.take(src)
        peaks.precursor_mz = peaks.precursor_mz * (1 + rng.normal(0, 3e-6, m))
        batch = peaks.to_batch()
        name = f"run{j:02d}_{f:02d}"
        usi = [f"mzspec:{accession}:{name}:scan:{i + 1}" for i in range(m)]
        batch = batch.set_column(0, "spectrum_id", pa.array(usi, pa.string()))
        batch = batch.set_column(1, "source_file", pa.array([f"{name}.mzML"] * m, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("scan"), "scan", pa.array(np.arange(1, m + 1)))
        yield accession, name, batch, perturbed_vectors(emb[src], rng), quality[src]


def build(repo: Path, size: int, n_datasets: int, real: data.Peaks, emb: npt.NDArray[np.float32],
          quality: npt.NDArray[np.float32], encoder_hash: str, seed: int, *, tail_retrain: bool = True
          ) -> dict[str, Any]:
    from engine.jobs.repository import RepositoryWriter
    from indexes.faiss_ivf import IndexPolicy

    # the default policy also retrains a partition whose unsorted tail exceeds a quarter of it (nearly every
    # dataset here); with --growth-only-retrain only growth past the kind or 4x the training size retrains
    policy = IndexPolicy() if tail_retrain else IndexPolicy(min_tail_rows=2**62)

    shutil.rmtree(repo, ignore_errors=True)
    per = size // n_datasets
    steps = []
    total = time.perf_counter()
    for j in range(n_datasets):
        t = time.perf_counter()
        writer: RepositoryWriter | None = None
        store_s = 0.0
        for accession, name, batch, vec, qual in dataset_batches(j, per, real, emb, quality, seed):
            if writer is None:
                writer = RepositoryWriter(repo, dataset=accession, dim=emb.shape[1], encoder_hash=encoder_hash,
                                          policy=policy)
            s = time.perf_counter()
            writer.add(batch, vec, qual)
            writer.file_done(hashlib.sha256(f"{accession}/{name}".encode()).hexdigest(), f"{name}.mzML",
                             n_records=batch.num_rows, n_skipped=0)
            store_s += time.perf_counter() - s
        assert writer is not None
        s = time.perf_counter()
        retrained = writer.finish()
        index_s = time.perf_counter() - s
        step = {"dataset": j + 1, "rows": writer.library.table.count_rows(), "store_s": store_s,
                "index_s": index_s, "seconds": time.perf_counter() - t, "retrained": ",".join(retrained) or "-"}
        steps.append(step)
        print(json.dumps(step), flush=True)
    seconds = time.perf_counter() - total
    from indexes.manifest import IndexManifest

    man = IndexManifest.load(repo / "index")
    return {"size": size, "datasets": n_datasets, "seconds": seconds, "steps": steps, "tail_retrain": tail_retrain,
            "disk_bytes_per_spectrum": dir_bytes(repo) / size,
            "index_bytes_per_spectrum": dir_bytes(repo / "index") / size,
            "partitions": [{"name": p.name, "kind": p.kind, "rows": p.n_rows, "nlist": p.nlist}
                           for p in man.partitions]}


# ------------------------------------------------------------------------------------------ serving

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_page_cache() -> bool:
    """Write dirty pages and drop the clean page cache (root on Linux); False where not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


class MemoryCgroup:
    """A memory cgroup (v1 or v2) below this process's own, limited to ``limit`` bytes; None if unavailable."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path, self.v2 = path, v2

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, rel = line.split(":", 2)
            v2 = controllers == ""
            if not v2 and "memory" not in controllers.split(","):
                continue
            base = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/memory")
            path = base / rel.lstrip("/") / f"engine-bench-{os.getpid()}"
            try:
                path.mkdir()
                (path / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit))
                return cls(path, v2)
            except OSError:
                continue
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def peak(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int((self.path / name).read_text())
        except OSError:
            return 0

    def oom_kills(self) -> int:
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


class Server:
    """``engine serve`` in a subprocess (in a memory cgroup when given), with a memory sampler."""

    def __init__(self, repo: Path, port: int, cgroup: MemoryCgroup | None = None, workers: int = 1) -> None:
        self.port = port
        self.cgroup = cgroup
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "-q", "serve", "--repo", str(repo),
                                      "--port", str(port), "--workers", str(workers)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if cgroup is not None:
            cgroup.add(self.proc.pid)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_anon = 0
        self.http: dict[str, str] | None = None
        start = time.perf_counter()
        seen: set[int] = set()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:  # a new connection each time, so that every worker process is seen answering
                status, body = request(self.conn(), "GET", "/health")
                if status == 200:
                    health = json.loads(body)
                    seen.add(int(health.get("process", 0)))
                    self.http = health.get("http")
                    if len(seen) >= workers:
                        break
                    continue
            except OSError:
                pass
            if time.perf_counter() - start > 600:
                raise RuntimeError("server did not start in 600 s")
            time.sleep(0.5)
        self.startup_s = time.perf_counter() - start
        self.peak = 0
        self.sample()

    def sample(self) -> None:
        """Update the peaks of resident and anonymous memory."""
        self.peak = max(self.peak, self.rss())
        self.peak_anon = max(self.peak_anon, self.anon())

    def anon(self) -> int:
        """Anonymous resident memory (``RssAnon``) of the server's processes, bytes; 0 where /proc does not say."""
        total = 0
        for p in self.tree():
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def tree(self) -> list[psutil.Process]:
        """The server process and its worker processes."""
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return [self.ps]

    def rss(self) -> int:
        """Resident memory of the server's processes (pages shared between workers counted once each)."""
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                total += int(p.memory_info().rss)
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
            ) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def load(server: Server, make: Any, clients: int, max_requests: int, max_seconds: float) -> dict[str, Any]:
    """``clients`` threads sending ``make(i) -> (method, path, body)`` until the count or the time is spent."""
    lat: list[float] = []
    errors = [0]
    counter = [0]
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        conn = server.conn()
        while not stop.is_set() and time.perf_counter() < deadline:
            with lock:
                if counter[0] >= max_requests:
                    return
                i = counter[0]
                counter[0] += 1
            method, path, body = make(i)
            t = time.perf_counter()
            try:
                status, _ = request(conn, method, path, body)
            except (OSError, http.client.HTTPException):
                status = 0
                conn = server.conn()
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                errors[0] += status != 200

    def sample() -> None:
        while not stop.is_set():
            server.sample()
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = server.cpu_seconds()
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu1 = server.cpu_seconds()
    stop.set()
    sampler.join()
    ms = np.asarray(lat) * 1000
    return {"clients": clients, "requests": len(lat), "seconds": wall, "lookups_per_s": len(lat) / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None, "errors": errors[0],
            "server_cores": (cpu1 - cpu0) / wall,
            "server_rss_gb": server.peak / 2**30, "server_anon_gb": server.peak_anon / 2**30,
            **({"cgroup_peak_gb": server.cgroup.peak() / 2**30} if server.cgroup is not None else {})}


def query_bodies(real: data.Peaks, meta: pa.Table, n: int, seed: int = 12345) -> list[bytes]:
    """JSON bodies of ``n`` freshly perturbed validation-split spectra (analogue lookups, top 10)."""
    rng = np.random.default_rng(seed)
    val = np.flatnonzero(np.asarray(meta.column("split").to_pylist(), dtype=object) == "val")
    rows = np.sort(rng.choice(val, size=n, replace=False))
    copy = data.perturb(real.take(rows), rng)
    out = []
    for i in range(n):
        a, b = copy.offsets[i], copy.offsets[i + 1]
        peaks = [[float(m), float(x)] for m, x in zip(copy.mz[a:b], copy.intensity[a:b], strict=True)]
        out.append(json.dumps({"peaks": peaks, "precursor_mz": float(copy.precursor_mz[i]),
                               "ion_mode": str(copy.ion_mode[i]), "mode": "analogue", "top_k": 10}).encode())
    return out


def serve_bench(repo: Path, size: int, real: data.Peaks, meta: pa.Table, clients: list[int], max_requests: int,
                max_seconds: float, memory_limit_gb: float | None = None, workers: int = 1) -> dict[str, Any]:
    import urllib.parse

    bodies = query_bodies(real, meta, 500)
    rng = np.random.default_rng(7)
    per = size // 10
    usis = []
    for _ in range(500):
        j, i = int(rng.integers(0, 10)), int(rng.integers(0, per))
        per_file = -(-per // FILES_PER_DATASET)
        usis.append(f"mzspec:MSV9{j:08d}:run{j:02d}_{i // per_file:02d}:scan:{i % per_file + 1}")
    usi_paths = [f"/lookup?top_k=10&usi={urllib.parse.quote(u)}" for u in usis]
    cgroup = None
    if memory_limit_gb is not None:
        cgroup = MemoryCgroup.create(int(memory_limit_gb * 2**30))
        if cgroup is None:
            raise SystemExit("--memory-limit-gb: no memory cgroup could be made here")
    dropped = drop_page_cache()
    server = Server(repo, free_port(), cgroup, workers)
    out: dict[str, Any] = {"startup_s": server.startup_s, "rss_after_start_gb": server.rss() / 2**30,
                           "anon_after_start_gb": server.anon() / 2**30, "page_cache_dropped": dropped,
                           "memory_limit_gb": memory_limit_gb, "workers": workers, "http": server.http,
                           "rows": []}
    try:
        conn = server.conn()
        for i in range(20):  # warm up both paths
            request(conn, "POST", "/lookup", bodies[i])
            request(conn, "GET", usi_paths[i])
        kinds = {"spectrum (POST /lookup, embedded by the server)": lambda i: ("POST", "/lookup",
                                                                                bodies[i % len(bodies)]),
                 "USI (GET /lookup?usi=)": lambda i: ("GET", usi_paths[i % len(usi_paths)], None)}
        for name, make in kinds.items():
            for c in clients:
                row = {"query": name, **load(server, make, c, max_requests, max_seconds)}
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
        out["rss_end_gb"] = server.rss() / 2**30
        out["server_alive"] = server.proc.poll() is None
    finally:
        server.stop()
        if cgroup is not None:
            out["cgroup_peak_gb"] = cgroup.peak() / 2**30
            out["oom_kills"] = cgroup.oom_kills()
            cgroup.remove()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=3000, help="Most lookups per client level and query kind.")
    ap.add_argument("--seconds", type=float, default=20.0, help="Most seconds per client level and query kind.")
    ap.add_argument("--workdir", default="/tmp/engine-bench-serve")
    ap.add_argument("--keep", action="store_true", help="Keep the repository in the workdir.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--growth-only-retrain", action="store_true",
                    help="Retrain partitions only when they outgrow their kind or training size (not for a long "
                         "unsorted tail, as the default policy also does).")
    ap.add_argument("--memory-limit-gb", type=float, default=None,
                    help="Run the server in a memory cgroup with this limit (page cache included; Linux).")
    ap.add_argument("--server-workers", type=int, default=1, help="engine serve --workers (server processes).")
    ap.add_argument("--serve-only", action="store_true",
                    help="Serve the repository kept by an earlier --keep run (its build figures are kept).")
    ap.add_argument("--rewrite", action="store_true", help="Only rewrite the RESULTS.md section from results.json.")
    args = ap.parse_args()
    if args.rewrite:
        runs = json.loads(JSON.read_text())["runs"]
        write_results("serve", TITLE, markdown(runs), {"runs": runs}, JSON)
        return
    from engine.jobs.artifacts import open_model

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    real, meta = data.load_massbank()
    model = open_model()
    emb, quality, rate = real_embeddings(workdir, real, model)
    encoder_hash = str(model.encoder_hash)
    del model
    repo = workdir / f"repo-{args.size}"
    previous = json.loads(JSON.read_text()).get("runs", {}) if JSON.exists() else {}
    measured = {"date": dt.date.today().isoformat(), "commit": commit(), "machine": machine()}
    if args.serve_only:
        if not (repo / "index").is_dir() or str(args.size) not in previous:
            raise SystemExit(f"--serve-only: no kept repository {repo} with build figures in {JSON}")
        built = previous[str(args.size)]["build"]
        built_when = previous[str(args.size)].get("build_measured", previous[str(args.size)].get("measured"))
        # the serve figures this run replaces stay on record beside the new ones
        earlier = [*previous[str(args.size)].get("earlier_serves", []),
                   {"serve": previous[str(args.size)]["serve"], "measured": previous[str(args.size)].get("measured")}]
    else:
        earlier = []
        built = build(repo, args.size, args.datasets, real, emb, quality, encoder_hash, args.seed,
                      tail_retrain=not args.growth_only_retrain)
        built_when = measured
    served = serve_bench(repo, args.size, real, meta, [int(c) for c in args.clients.split(",")], args.requests,
                         args.seconds, args.memory_limit_gb, args.server_workers)
    result = {"size": args.size, "build": built, "serve": served, "model_embedding_spectra_per_s": rate,
              "measured": measured, "build_measured": built_when, "earlier_serves": earlier,
              "lance_versions_pruned": True,
              "load_average_at_start": load_start, "load_average_at_end": os.getloadavg()[0],
              "limits": {"requests": args.requests, "seconds": args.seconds}}
    previous[str(args.size)] = result
    write_results("serve", TITLE,
                  markdown(previous), {"runs": previous}, JSON)
    if not args.keep and not args.serve_only:
        shutil.rmtree(repo, ignore_errors=True)


def _stack_text(serve: dict[str, Any]) -> str:
    """uvicorn's HTTP parser and loop of a serve run (runs before they were recorded used h11 and asyncio)."""
    stack = serve.get("http") or {"http": "h11", "loop": "asyncio"}
    return f"uvicorn on {stack['http']} and {stack['loop']}"


def _machine_text(m: Any) -> str:
    if not isinstance(m, dict):
        return str(m)
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['gpu'] or 'no GPU'}"


def _by_query(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows keyed by (query kind: "spectrum" or "USI", clients)."""
    return {(x["query"].split(" ")[0], x["clients"]): x for x in rows}


def _serve_table(s: dict[str, Any]) -> str:
    return markdown_table(s["rows"], ["query", "clients", "requests", "lookups_per_s", "p50_ms", "p99_ms", "errors"]
                          + (["server_cores"] if "server_cores" in s["rows"][0] else []) + ["server_rss_gb"]
                          + (["server_anon_gb"] if "server_anon_gb" in s["rows"][0] else [])
                          + (["cgroup_peak_gb"] if "cgroup_peak_gb" in s["rows"][0] else []))


def _earlier(serves: list[dict[str, Any]]) -> str:
    """The serve figures of the same repository at earlier commits (``--serve-only`` reruns)."""
    out = []
    for e in serves:
        when = e.get("measured") or {}
        rate = _by_query(e["serve"]["rows"])
        cells = ", ".join(f"{q} x{c}: {x['lookups_per_s']:.1f}/s p99 {x['p99_ms']:.0f} ms"
                          for (q, c), x in sorted(rate.items()))
        cells = f"{e['serve'].get('workers', 1)} server process(es), {_stack_text(e['serve'])}; " + cells
        where = _machine_text(when["machine"]) if "machine" in when else "?"
        out.append(f"- commit {when.get('commit', '?')} ({when.get('date', '?')}, {where}"
                   f"{'; ' + e['note'] if e.get('note') else ''}): {cells}")
    return ("\n\nEarlier measurements at this size, for comparison (other commits):\n\n"
            + "\n".join(out)) if out else ""


def _best_earlier(run: dict[str, Any]) -> str:
    """The best earlier spectrum-lookup figure at 8 clients of a size, as a sentence ("" if none)."""
    best = None
    for e in run.get("earlier_serves", []):
        for x in e["serve"]["rows"]:
            if x["query"].startswith("spectrum") and x["clients"] == 8 and \
                    (best is None or x["lookups_per_s"] > best[1]["lookups_per_s"]):
                best = (e, x)
    if best is None:
        return ""
    e, x = best
    when = e.get("measured") or {}
    where = _machine_text(when["machine"]) if "machine" in when else "?"
    ok = x["p99_ms"] < 100 and x["lookups_per_s"] >= 200
    return (f" The best earlier figure at this size (listed under its table) was {x['lookups_per_s']:.0f}/s, p99 "
            f"{x['p99_ms']:.0f} ms ({'met' if ok else 'not met'}; commit {when.get('commit', '?')}, {where}).")


def _target_10m(r10: dict[str, Any]) -> str:
    """The paragraph on the 10M target: memory-mapped IVF-PQ within 8 GB."""
    serve = r10["serve"]
    rows10 = _by_query(serve["rows"])
    rss = max([x["server_rss_gb"] for x in serve["rows"]] + [serve["rss_after_start_gb"]])
    kinds10 = {p["kind"] for p in r10["build"]["partitions"]}
    at8 = rows10.get(("spectrum", 8))
    rate = f"; spectrum lookups at 8 clients {at8['lookups_per_s']:.0f}/s, p99 {at8['p99_ms']:.0f} ms" if at8 else ""
    limit = serve.get("memory_limit_gb")
    if limit is None:  # runs before the memory cgroup: resident memory only
        return (f"**Target at 10M** (served from memory-mapped IVF-PQ within 8 GB): partitions "
                f"{', '.join(sorted(kinds10))}, server resident memory at most {rss:.2f} GB: "
                f"{'met' if rss <= 8 and kinds10 <= {'ivf_pq', 'flat'} else 'not met'}{rate}. Resident memory "
                "counts the touched pages of the memory-mapped vectors; anonymous memory was not measured apart.")
    anon = max([x.get("server_anon_gb", 0.0) for x in serve["rows"]] + [serve.get("anon_after_start_gb", 0.0)])
    errors = sum(x["errors"] for x in serve["rows"])
    ok = (limit <= 8 and kinds10 <= {"ivf_pq", "flat"} and not serve.get("oom_kills") and errors == 0
          and serve.get("server_alive", True))
    return (f"**Target at 10M** (served from memory-mapped IVF-PQ within 8 GB): partitions "
            f"{', '.join(sorted(kinds10))}; the server ran inside a memory cgroup limited to {limit:g} GB, which "
            f"is charged for the page cache the server reads (the kernel reclaims it at the limit), started on "
            f"{'a dropped' if serve.get('page_cache_dropped') else 'a warm (not dropped)'} page cache: cgroup "
            f"peak {serve.get('cgroup_peak_gb', 0.0):.2f} GB, anonymous memory at most {anon:.2f} GB (model, "
            f"metadata, PQ lists and the 8-bit re-scoring codes loaded into memory), resident at most "
            f"{rss:.2f} GB, {serve.get('oom_kills', 0)} OOM kills, {errors} failed lookups: "
            f"{'met' if ok else 'not met'}{rate}.")


def markdown(runs: dict[str, Any]) -> str:
    parts = [
        "`python -m benchmarks.serve.run --size N` (see `benchmarks/serve/run.py`): a repository of N spectra "
        "built incrementally in 10 datasets through the `engine repository add` code path (rows are perturbed "
        "copies of MassBank spectra whose vectors are perturbed in embedding space, so the build time excludes "
        "embedding; the model's embedding rate is given beside it), then `engine serve` in a subprocess on "
        "127.0.0.1 and 1 / 8 / 32 client threads on keep-alive connections, on the same 2 shared cores. "
        "Spectrum lookups are analogue, top 10, embedded by the server; USI lookups use the stored vector.",
    ]
    if "1000000" in runs:
        rows = _by_query(runs["1000000"]["serve"]["rows"])
        at8 = rows.get(("spectrum", 8))
        if at8:
            ok = at8["p99_ms"] < 100 and at8["lookups_per_s"] >= 200
            parts.append(f"**Targets at 1M** (p99 < 100 ms at 8 clients, >= 200 lookups/s): spectrum lookups at 8 "
                         f"clients {at8['lookups_per_s']:.0f}/s, p99 {at8['p99_ms']:.0f} ms: "
                         f"{'met' if ok else 'not met'} on this shared machine. At 32 clients throughput rises but "
                         f"p99 grows (the 32 client threads share the 2 cores with the server)."
                         + ("" if ok or "server_cores" not in at8 else
                            f" The server ({runs['1000000']['serve'].get('workers', 1)} process(es)) used "
                            f"{at8['server_cores']:.2f} of the 2 cores at 8 clients; one process is bound to about "
                            "one core, as its lookup thread and its event loop share one Python interpreter lock."
                            + _best_earlier(runs["1000000"])))
    if "10000000" in runs:
        parts.append(_target_10m(runs["10000000"]))
    else:
        parts.append("**10M spectra: not built.** The 1M build took about 26 minutes on the earlier session's "
                     "machine (mostly retraining the two large partitions after each dataset), so 10M did not fit a "
                     "session; the memory-mapped IVF-PQ target at 10M is not measured. A 10M repository's "
                     "partitions are IVF-PQ (64 bytes of codes per vector in RAM, vectors memory-mapped for "
                     "re-scoring), for which `benchmarks/index` (index section) measures 10M vectors at 40 bytes "
                     "per vector of dimension 128.")
    parts.append("Disk: LanceDB keeps the files of older table versions (7 days by default), and every add "
                 "compacts its appends into new files, so the repositories built before version pruning (marked "
                 "below) held their data several times over; `engine repository add` now removes the versions "
                 "older than the one it opened (`indexes/store.py`, `VectorTable.optimize(keep_from=...)`), "
                 "leaving the compacted data plus the last add's appends.")
    for size, r in sorted(runs.items(), key=lambda kv: int(kv[0])):
        b, s = r["build"], r["serve"]
        kinds = ", ".join(f"{p['name']} {p['kind']} {p['rows']:,}" for p in b["partitions"])
        retrain = ("stale partitions retrained by the default policy (also for an unsorted tail over a quarter of "
                   "the partition, which here retrains the large partitions after nearly every dataset)"
                   if b.get("tail_retrain", True) else "partitions retrained only when they outgrow their training")
        when = r.get("measured")
        built_when = r.get("build_measured", when)
        measured = (f"_Measured {when['date']}, commit {when['commit']}, {_machine_text(when['machine'])}"
                    + (f"; built {built_when['date']} at commit {built_when['commit']}"
                       if built_when and built_when != when else "") + "._\n\n"
                    if when else
                    "_Measured on the earlier session's machine (see the header of the issue-17 commit's RESULTS)._"
                    "\n\n")
        pruned = "" if r.get("lance_versions_pruned") else " (built before version pruning)"
        parts.append(f"### {int(size):,} spectra\n\n{measured}"
                     f"Build: {b['seconds']:.0f} s for {b['datasets']} datasets "
                     f"({b['seconds'] / int(size) * 1e6:.0f} µs per spectrum without embedding; the model embeds "
                     f"{r['model_embedding_spectra_per_s']:,.0f} spectra/s here); disk "
                     f"{b['disk_bytes_per_spectrum']:,.0f} bytes per spectrum{pruned} (peaks, metadata and "
                     f"embedding in LanceDB; index {b['index_bytes_per_spectrum']:,.0f}); partitions: {kinds}; "
                     f"{retrain}. "
                     f"Load average {r['load_average_at_start']:.1f} at start, {r['load_average_at_end']:.1f} at "
                     f"end (other jobs share the 2 cores).\n\n"
                     + markdown_table(b["steps"], ["dataset", "rows", "store_s", "index_s", "seconds", "retrained"])
                     + f"\n\nServer: `engine serve --workers {s.get('workers', 1)}` ({_stack_text(s)}), started in "
                     f"{s['startup_s']:.1f} s, {s['rss_after_start_gb']:.2f} GB resident after start. Each row: at "
                     f"most {r['limits']['requests']} lookups or {r['limits']['seconds']:.0f} s.\n\n"
                     + _serve_table(s) + _earlier(r.get("earlier_serves", [])))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
