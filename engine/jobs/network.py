"""``engine network``: a molecular network of many spectra across ion modes, grown run by run.

Inputs are spectrum files or ``engine annotate`` output directories (their embeddings and library
annotations are reused; their spectra's peaks, feature ids and scans are read again from the query
files the job names, which embeds nothing). New spectra become nodes of a LanceDB store in ``OUT/store``
(:mod:`indexes.network_store`); their candidate edges are found by k-NN over the embeddings
(:func:`engine.queries.network.knn_candidates`): new nodes against all nodes, and old nodes against the
new ones only, so the pairs of earlier runs are never computed again. The network is then derived from
all candidates (:func:`network_edges`, :func:`split_components`, :func:`components`) and written out by
:mod:`engine.jobs.network_files`. With exact search (up to ``exact_max_rows`` nodes per ion mode,
default 50,000) the result equals a network built from scratch on all inputs; above it the neighbour
search is approximate (IVF) and a grown network can differ from a scratch build in a few edges.

An input already in the store (same content hash) is skipped. Settings that change the candidates
(model, ``top_k``, cross-mode search, the Tanimoto map, the library) rebuild the store; ``min_score``,
``max_component_size`` and the re-score only change the derived files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.config import Settings, setting
from engine.core.locks import DirectoryLock
from engine.core.paths import CALIBRATION_DIR
from engine.core.records import IonMode
from engine.core.schema import SCHEMA_VERSION, spectra_to_batch
from engine.io.stream import OnInvalid, ReadReport, batched, read_indexed_spectra
from engine.jobs.annotate import plan_files
from engine.jobs.artifacts import open_library_and_model, open_model
from engine.jobs.chunks import InputFile
from engine.jobs.network_files import Network, write_network
from engine.jobs.output import read_part
from engine.models.tanimoto_map import MAP_NAME, load_tanimoto_map, positive_mask
from engine.queries.network import (
    Candidates,
    components,
    knn_candidates,
    network_edges,
    propagate_annotations,
    split_components,
    top_k_per_source,
)
from indexes.network_store import NODE_COLUMNS, NetworkStore, node_schema

log = logging.getLogger(__name__)

Rescore = Literal["none", "modified-cosine", "entropy"]
RESCORES: tuple[str, ...] = ("none", "modified-cosine", "entropy")
#: Default ``--min-score`` (calibrated predicted Tanimoto), chosen by ``benchmarks/network`` on the
#: model's calibration fold of train (not on val): the lowest threshold on a 0.05 grid above which every
#: score bin of mutual top-10 edges has at least half its edges at true Tanimoto >= 0.6 (0.75-0.80: 0.49
#: positive / 0.41 negative; 0.80-0.85: 0.77 / 0.77). Cross-mode edges never reach that share on the fold
#: (0.20 at 0.80-0.85, the best cross bin), so they are hypotheses to check, not identifications.
DEFAULT_MIN_SCORE = 0.8
FEATURE_KEYS = ("FEATURE_ID", "feature_id", "Feature_ID", "FEATUREID")


@dataclass(frozen=True)
class NetworkSettings(Settings):
    """Knobs of a network; ``top_k`` and ``cross_mode`` decide the stored candidates, the rest only the
    derived network."""

    top_k: int = setting(10, ge=1)
    min_score: float = DEFAULT_MIN_SCORE
    max_component_size: int = 100
    cross_mode: bool = True
    mutual: bool = True
    rescore: Rescore = "none"
    rescore_tolerance: float = 0.02
    exact_max_rows: int = 50_000
    batch_rows: int = 4096
    graph_files: bool = True



@dataclass(frozen=True)
class NetworkInputs:
    """How to read spectrum files (as ``engine annotate`` reads them)."""

    on_invalid: OnInvalid = "skip"
    dataset: str | None = None
    default_ion_mode: IonMode | None = None


@dataclass
class NetworkSummary:
    """What a run did and what the network holds."""

    nodes: int = 0
    edges: int = 0
    cross_mode_edges: int = 0
    components: int = 0
    singletons: int = 0
    largest_component: int = 0
    components_by_size: dict[str, int] = field(default_factory=dict)
    annotated_nodes: int = 0
    neighbour_annotated_nodes: int = 0
    inputs: int = 0
    inputs_added: int = 0
    spectra_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    nodes_added: int = 0
    spectra_embedded: int = 0
    candidate_pairs_scored: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    rebuilt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        wall = self.seconds.get("total", 0.0)
        return {"nodes": self.nodes, "edges": self.edges, "cross_mode_edges": self.cross_mode_edges,
                "components": self.components, "singletons": self.singletons,
                "largest_component": self.largest_component, "components_by_size": self.components_by_size,
                "annotated_nodes": self.annotated_nodes, "neighbour_annotated_nodes": self.neighbour_annotated_nodes,
                "inputs": self.inputs, "inputs_added_this_run": self.inputs_added,
                "spectra_read": self.spectra_read, "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(self.skipped), "nodes_added_this_run": self.nodes_added,
                "spectra_embedded_this_run": self.spectra_embedded,
                "candidate_pairs_scored_this_run": self.candidate_pairs_scored,
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "spectra_per_second": round(self.nodes_added / wall, 1) if wall > 0 and self.nodes_added else None,
                "settings": self.settings, "note": self.note, "store_rebuilt": self.rebuilt}

    def text(self) -> str:
        d = self.to_dict()
        lines = [f"nodes: {d['nodes']} ({d['nodes_added_this_run']} added, {d['spectra_embedded_this_run']} "
                 f"embedded this run), edges: {d['edges']} ({d['cross_mode_edges']} cross-mode), "
                 f"components: {d['components']} (largest {d['largest_component']}), singletons: {d['singletons']}",
                 f"library-annotated nodes: {d['annotated_nodes']}, annotated through a neighbour: "
                 f"{d['neighbour_annotated_nodes']}; spectra read: {d['spectra_read']}, skipped: {d['skipped']}"]
        lines += [f"  skipped {k}: {v}" for k, v in sorted(self.skipped.items())]
        if d["note"]:
            lines.append(f"note: {d['note']}")
        return "\n".join(lines)


# --- inputs -----------------------------------------------------------------------------------------
def is_annotate_output(path: Path) -> bool:
    """True for an ``engine annotate`` output directory (``job.json`` and ``results/``)."""
    return path.is_dir() and (path / "job.json").is_file() and (path / "results").is_dir()


def _feature_id(metadata_json: str | None) -> str | None:
    if not metadata_json:
        return None
    meta = json.loads(metadata_json)
    for key in FEATURE_KEYS:
        if key in meta and str(meta[key]).strip():
            return str(meta[key]).strip()
    return None


def _node_rows(batch: pa.RecordBatch, key: str, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
               annotation: pa.Table | None, start_id: int, dim: int) -> pa.Table:
    """Node rows for a batch of the spectrum schema and its embeddings (and library annotation)."""
    n = batch.num_rows
    cols: dict[str, Any] = {
        "node_id": pa.array(np.arange(start_id, start_id + n, dtype=np.int64)),
        "spectrum_id": batch.column("spectrum_id"), "input_key": pa.array([key] * n, pa.string()),
        "source_file": batch.column("source_file"), "record_index": batch.column("record_index"),
        "feature_id": pa.array([_feature_id(m) for m in batch.column("metadata_json").to_pylist()], pa.string()),
        "scan": batch.column("scan"), "precursor_mz": batch.column("precursor_mz"),
        "ion_mode": batch.column("ion_mode"), "retention_time": batch.column("retention_time"),
        "quality": pa.array(quality.astype(np.float32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.astype(np.float32).ravel()), dim),
        "mz": batch.column("mz"), "intensity": batch.column("intensity"),
    }
    for name in ("library_id", "name", "smiles", "inchikey"):
        cols[f"annotation_{name}"] = (annotation.column(name) if annotation is not None
                                      else pa.nulls(n, pa.string()))
    cols["annotation_probability"] = (annotation.column("score").cast(pa.float32()) if annotation is not None
                                      else pa.nulls(n, pa.float32()))
    schema = node_schema(dim)
    return pa.table([pa.array(cols[f.name]).cast(f.type) if not isinstance(cols[f.name], pa.ChunkedArray)
                     else cols[f.name].cast(f.type) for f in schema], schema=schema)


class _Annotation:
    """Library matches (top identity hit) for node annotation, with the model already open."""

    def __init__(self, library: str | None, model_path: str | None) -> None:
        from engine.queries.references import References

        self.library, self.model = open_library_and_model(library, model_path)
        self.references = References(self.library)

    def __call__(self, batch: pa.RecordBatch, emb: npt.NDArray[np.float32],
                 quality: npt.NDArray[np.float32]) -> pa.Table:
        import pyarrow.compute as pc

        from engine.queries.identity import IdentitySettings, identity_search

        hits = identity_search(batch, self.library, self.references, self.model,
                               settings=IdentitySettings(top_k=1), embeddings=(emb, quality))
        top = hits.filter(pc.field("rank") == 1) if hits.num_rows else hits
        pos = pc.index_in(batch.column("spectrum_id"), value_set=top.column("query_id").combine_chunks())
        return pa.table({c: pc.take(top.column(c), pos) if top.num_rows else pa.nulls(batch.num_rows, t)
                         for c, t in (("library_id", pa.string()), ("name", pa.string()), ("smiles", pa.string()),
                                      ("inchikey", pa.string()), ("score", pa.float32()))})


def _read_file(file: InputFile, options: NetworkInputs, report: ReadReport, chunk: int) -> Iterator[pa.RecordBatch]:
    items = read_indexed_spectra(file.path, on_invalid=options.on_invalid, dataset=options.dataset,
                                 default_ion_mode=options.default_ion_mode, report=report)
    for group in batched(items, chunk):
        yield spectra_to_batch([s for _, s in group], file_sha256=file.sha256,
                               record_indices=[i for i, _ in group])


def _annotate_parts(job: Path) -> list[tuple[InputFile, list[Path]]]:
    """The completed input files of an annotate output and their result parts."""
    out = []
    for info_path in sorted((job / "files").glob("*.json")):
        info = json.loads(info_path.read_text())
        file = InputFile(Path(info["path"]), info["sha256"])
        parts = sorted((job / "results" / f"file={file.key}").glob("part-*.parquet"))
        out.append((file, parts))
    return out


# --- the job ----------------------------------------------------------------------------------------
class NetworkJob:
    """One run of ``engine network`` into ``out`` (see the module docstring)."""

    def __init__(self, out: str | Path, settings: NetworkSettings, *, model: str | None = None,
                 library: str | None = None, options: NetworkInputs | None = None) -> None:
        self.out = Path(out)
        self.settings = settings
        self.options = options or NetworkInputs()
        self.model_path = model
        self.library = library
        self._annotation: _Annotation | None = _Annotation(library, model) if library else None
        self.model: Any = self._annotation.model if self._annotation is not None else open_model(model)
        self.tmap = load_tanimoto_map(self.model.encoder_hash)
        self.summary = NetworkSummary(settings=asdict(settings))
        self.seconds: dict[str, float] = defaultdict(float)

    def fingerprint(self) -> dict[str, Any]:
        """What the stored nodes and candidates depend on."""
        tmap_file = CALIBRATION_DIR / f"{MAP_NAME}.json"
        return {"engine_schema_version": SCHEMA_VERSION, "encoder_hash": self.model.encoder_hash,
                "tanimoto_map": hashlib.sha256(tmap_file.read_bytes()).hexdigest()[:16] if tmap_file.exists() else None,
                "top_k": self.settings.top_k, "cross_mode": self.settings.cross_mode,
                "library": str(Path(self.library).resolve()) if self.library else None}

    def open_store(self) -> NetworkStore:
        self.out.mkdir(parents=True, exist_ok=True)
        job = self.out / "network.json"
        fp = self.fingerprint()
        if job.exists():
            old = json.loads(job.read_text()).get("fingerprint", {})
            if old != fp:
                self.summary.rebuilt = ", ".join(sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k)))
                log.warning("network settings changed (%s): rebuilding the store", self.summary.rebuilt)
                shutil.rmtree(self.out / "store", ignore_errors=True)
        job.write_text(json.dumps({"fingerprint": fp}, indent=2) + "\n")
        return NetworkStore(self.out / "store", self.model.dim)

    def embed(self, batch: pa.RecordBatch) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        t = time.perf_counter()
        emb, quality = self.model.embed_spectra(batch)
        self.summary.spectra_embedded += batch.num_rows
        self.seconds["embed"] += time.perf_counter() - t
        return emb, quality

    def annotate(self, batch: pa.RecordBatch, emb: npt.NDArray[np.float32],
                 quality: npt.NDArray[np.float32]) -> pa.Table | None:
        if self._annotation is None:
            return None
        t = time.perf_counter()
        out = self._annotation(batch, emb, quality)
        self.seconds["annotate"] += time.perf_counter() - t
        return out

    def add_file(self, store: NetworkStore, file: InputFile) -> None:
        report = ReadReport()
        for batch in _read_file(file, self.options, report, self.settings.batch_rows):
            if batch.num_rows == 0:
                continue
            emb, quality = self.embed(batch)
            nodes = _node_rows(batch, file.key, emb, quality, self.annotate(batch, emb, quality), store.n_nodes,
                               self.model.dim)
            store.add_nodes(nodes)
            self.summary.nodes_added += nodes.num_rows
        store.add_input(file.key, str(file.path), "file", report.to_dict())

    def add_annotated(self, store: NetworkStore, file: InputFile, parts: list[Path], encoder_hash: str | None
                      ) -> None:
        """Nodes from one input file of an annotate output: its embeddings and annotations, peaks re-read.
        Embeddings of another model than the network's (``encoder_hash``) are made again."""
        results = pa.concat_tables([read_part(p, embeddings=True) for p in parts]) if parts else None
        report = ReadReport()
        if results is None or results.num_rows == 0:
            store.add_input(file.key, str(file.path), "annotate", report.to_dict())
            return
        by_record = {int(r): i for i, r in enumerate(results.column("record_index").to_numpy().tolist())}
        has_emb = "embedding" in results.column_names and encoder_hash == self.model.encoder_hash
        if not has_emb:
            log.warning("%s: annotate results without embeddings of this model; embedding again", file.path)
        if not file.path.exists():
            log.warning("%s: query file not found; its %d spectra are left out", file.path, results.num_rows)
            store.add_input(file.key, str(file.path), "annotate", {**report.to_dict(), "missing": True})
            return
        for batch in _read_file(file, self.options, report, self.settings.batch_rows):
            rec = batch.column("record_index").to_numpy().tolist()
            rows = np.array([by_record.get(int(r), -1) for r in rec], dtype=np.int64)
            keep = np.flatnonzero(rows >= 0)
            if keep.size == 0:
                continue
            batch = batch.take(pa.array(keep, pa.int64()))
            rows = rows[keep]
            res = results.take(pa.array(rows, pa.int64()))
            if has_emb:
                col: Any = res.column("embedding").combine_chunks()
                emb = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
                quality = res.column("quality").to_numpy(zero_copy_only=False).astype(np.float32)
            else:
                emb, quality = self.embed(batch)
            annotation = pa.table({"library_id": res.column("identity_library_id"),
                                   "name": res.column("identity_name"), "smiles": res.column("identity_smiles"),
                                   "inchikey": res.column("identity_inchikey"),
                                   "score": res.column("identity_score")})
            if self._annotation is not None:
                annotation = self.annotate(batch, emb, quality) or annotation
            nodes = _node_rows(batch, file.key, emb, quality, annotation, store.n_nodes, self.model.dim)
            store.add_nodes(nodes)
            self.summary.nodes_added += nodes.num_rows
        store.add_input(file.key, str(file.path), "annotate", report.to_dict())

    def run(self, inputs: Sequence[str | Path]) -> NetworkSummary:
        start = time.perf_counter()
        store = self.open_store()
        done = store.input_keys()
        n_old = store.n_nodes
        plan: list[tuple[InputFile, list[Path] | None, str | None]] = []
        files: list[str | Path] = []
        for item in inputs:
            if is_annotate_output(Path(item)):
                job = json.loads((Path(item) / "job.json").read_text()).get("fingerprint", {})
                plan += [(f, parts, job.get("encoder_hash")) for f, parts in _annotate_parts(Path(item))]
            else:
                files.append(item)
        plan += [(f, None, None) for f in (plan_files(files) if files else [])]
        seen: set[str] = set()
        t = time.perf_counter()
        for file, parts, encoder_hash in plan:
            if file.key in done or file.key in seen:
                continue
            seen.add(file.key)
            self.summary.inputs_added += 1
            if parts is None:
                self.add_file(store, file)
            else:
                self.add_annotated(store, file, parts, encoder_hash)
        self.seconds["ingest"] += time.perf_counter() - t
        self._grow_candidates(store, n_old)
        t = time.perf_counter()
        network = self.derive(store)
        self.seconds["network"] += time.perf_counter() - t
        t = time.perf_counter()
        write_network(self.out, network, store, self.settings, graph_files=self.settings.graph_files)
        self.seconds["write"] += time.perf_counter() - t
        self._summarise(store, network)
        self.seconds["total"] = time.perf_counter() - start
        self.summary.seconds = dict(self.seconds)
        (self.out / "summary.json").write_text(json.dumps(self.summary.to_dict(), indent=2) + "\n")
        return self.summary

    def _grow_candidates(self, store: NetworkStore, n_old: int) -> None:
        """Candidates of the new nodes (against all) and of the old nodes against the new ones."""
        n = store.n_nodes
        if n == n_old or n < 2:
            return
        t = time.perf_counter()
        emb = store.embeddings()
        positive = positive_mask(store.read_nodes(["ion_mode"]).column("ion_mode").to_pylist(), n)
        s = self.settings
        kw: dict[str, Any] = {"top_k": s.top_k, "cross_mode": s.cross_mode, "tmap": self.tmap,
                              "batch_rows": s.batch_rows, "exact_max_rows": s.exact_max_rows}
        new = np.arange(n_old, n, dtype=np.int64)
        old = np.arange(0, n_old, dtype=np.int64)
        found = [knn_candidates(emb, positive, new, np.arange(n, dtype=np.int64), **kw)]
        if n_old:
            found.append(knn_candidates(emb, positive, old, new, **kw))
        c = Candidates.concat(found)
        self.summary.candidate_pairs_scored += len(c)
        store.add_candidates(_candidate_table(c))
        self.seconds["neighbours"] += time.perf_counter() - t

    def derive(self, store: NetworkStore) -> Network:
        """The network from all stored candidates and the derived-network settings."""
        n = store.n_nodes
        s = self.settings
        stored = store.read_candidates()
        c = top_k_per_source(_candidates_of(stored), s.top_k)
        if stored.num_rows > 1.5 * max(len(c), 1) and stored.num_rows > 10_000:
            store.replace_candidates(_candidate_table(c))
        edges = network_edges(c, min_score=s.min_score, mutual=s.mutual)
        edges = split_components(n, edges, s.max_component_size)
        comp, size = components(n, edges)
        nodes = store.read_nodes([c for c in NODE_COLUMNS if c not in ("input_key",)])
        annotated = np.asarray(nodes.column("annotation_library_id").is_valid().to_numpy(zero_copy_only=False),
                               dtype=bool)
        prob = nodes.column("annotation_probability").to_numpy(zero_copy_only=False).astype(np.float32)
        best, reliability = propagate_annotations(n, edges, annotated, prob)
        return Network(nodes, edges, comp, size, best, reliability)

    def _summarise(self, store: NetworkStore, net: Network) -> None:
        s = self.summary
        s.nodes = net.n_nodes
        s.edges = len(net.edges)
        modes = net.nodes.column("ion_mode").to_pylist() if net.n_nodes else []
        positive = positive_mask(modes, net.n_nodes) if net.n_nodes else np.zeros(0, bool)
        s.cross_mode_edges = int((positive[net.edges.source] != positive[net.edges.target]).sum())
        multi = net.component > 0
        s.components = int(np.unique(net.component[multi]).size)
        s.singletons = int((~multi).sum())
        s.largest_component = int(net.size[multi].max()) if multi.any() else (1 if net.n_nodes else 0)
        sizes = Counter(int(x) for x in np.bincount(net.component[multi])[1:] if x)
        s.components_by_size = {str(k): v for k, v in sorted(sizes.items())}
        s.annotated_nodes = int(net.nodes.column("annotation_library_id").is_valid().to_numpy(
            zero_copy_only=False).sum()) if net.n_nodes else 0
        s.neighbour_annotated_nodes = int((net.neighbour >= 0).sum())
        infos = store.inputs()
        s.inputs = len(infos)
        for info in infos:
            s.spectra_read += int(info["info"].get("spectra_read", 0))
            s.skipped.update(info["info"].get("skipped_by_reason", {}))
        if net.n_nodes == 0:
            s.note = "no valid spectra in the inputs: the network is empty"
        elif net.n_nodes == 1:
            s.note = "a single spectrum: the network has no edges"
        elif s.edges == 0:
            s.note = f"no pair of spectra reaches predicted Tanimoto {self.settings.min_score}"


def _candidate_table(c: Candidates) -> pa.Table:
    return pa.table({"source": pa.array(c.source, pa.int64()), "target": pa.array(c.target, pa.int64()),
                     "cosine": pa.array(c.cosine, pa.float32()), "predicted_tanimoto": pa.array(c.score, pa.float32())})


def _candidates_of(table: pa.Table) -> Candidates:
    def col(name: str, dtype: Any) -> Any:
        return table.column(name).to_numpy().astype(dtype) if table.num_rows else np.zeros(0, dtype)

    return Candidates(col("source", np.int64), col("target", np.int64), col("cosine", np.float32),
                      col("predicted_tanimoto", np.float32))


def build_network(inputs: Sequence[str | Path], out: str | Path, *, settings: NetworkSettings | None = None,
                  model: str | None = None, library: str | None = None,
                  options: NetworkInputs | None = None) -> NetworkSummary:
    """Add ``inputs`` to the network in ``out`` and write its files (see the module docstring). One writer
    at a time: ``out`` is locked for the run (:mod:`engine.core.locks`)."""
    with DirectoryLock(out, command="engine network"):
        return NetworkJob(out, settings or NetworkSettings(), model=model, library=library,
                          options=options).run(inputs)

