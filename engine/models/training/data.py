"""Training data: filtered MassBank spectra (preprocessed once), structures, fingerprints, graphs and
hard-negative pools, built once and cached as one ``.npz`` under ``runs/cache`` (keyed by a hash of the
data config and the preprocessing pipeline).

Splits: ``train`` records (licence-filtered) are divided by scaffold group into the training fold and a
small calibration fold used only to fit the quality estimate; ``val`` is kept whatever its licence.
A spectrum is *clean* when it passes the training filters (high-resolution instrument, sane precursor,
not blacklisted, enough peaks); training uses clean spectra, calibration and evaluation see all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from engine.core.config import to_dict
from engine.core.fsutil import atomic_path
from engine.core.peaks import Peaks, offsets_of
from engine.core.preprocess import Pipeline
from engine.models.encoders.featurize import GraphStore, concat_ranges, featurize
from engine.models.encoders.spectrum import preprocess_flat
from engine.models.training.config import DataConfig

log = logging.getLogger(__name__)

CACHE_VERSION = 1
TRAIN, CALIB, VAL = 0, 1, 2
SPLIT_NAMES = ("train", "calibration", "val")
FP_BITS = 2048


@dataclass(frozen=True)
class PreparedData:
    """Everything training needs, in flat numpy arrays (see module docs)."""

    spec_ptr: npt.NDArray[np.int64]
    mz: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float32]
    precursor_mz: npt.NDArray[np.float64]
    ion_positive: npt.NDArray[np.bool_]
    spec_struct: npt.NDArray[np.int64]
    spec_split: npt.NDArray[np.int8]
    spec_clean: npt.NDArray[np.bool_]
    spectrum_id: npt.NDArray[np.str_]
    struct_smiles: npt.NDArray[np.str_]
    struct_ik14: npt.NDArray[np.str_]
    struct_formula: npt.NDArray[np.str_]
    struct_mass: npt.NDArray[np.float64]
    struct_split: npt.NDArray[np.int8]
    fingerprints: npt.NDArray[np.uint8]      # packed bits [S, FP_BITS / 8]
    graph_x: npt.NDArray[np.int8]
    graph_edge_index: npt.NDArray[np.int32]
    graph_edge_attr: npt.NDArray[np.int8]
    graph_atom_ptr: npt.NDArray[np.int64]
    graph_edge_ptr: npt.NDArray[np.int64]
    neg_ptr: npt.NDArray[np.int64]            # [S + 1] pools of graph rows >= S
    neg_rows: npt.NDArray[np.int64]

    @property
    def n_structures(self) -> int:
        return int(self.struct_ik14.shape[0])

    @property
    def n_spectra(self) -> int:
        return int(self.precursor_mz.shape[0])

    def graphs(self) -> GraphStore:
        return GraphStore(self.graph_x, self.graph_edge_index, self.graph_edge_attr, self.graph_atom_ptr,
                          self.graph_edge_ptr)

    def peaks(self, rows: npt.NDArray[np.int64]) -> Peaks:
        """(Preprocessed) peaks of spectra ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, counts = self.spec_ptr[rows], self.spec_ptr[rows + 1] - self.spec_ptr[rows]
        idx = concat_ranges(starts, counts)
        return Peaks(self.mz[idx], self.intensity[idx], offsets_of(counts), self.precursor_mz[rows])

    def fingerprint_bits(self, rows: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.uint8]:
        fp = self.fingerprints if rows is None else self.fingerprints[rows]
        return np.unpackbits(fp, axis=1, count=FP_BITS)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: Path) -> PreparedData:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})


def cache_key(config: DataConfig, pipeline: Pipeline) -> str:
    payload = {"version": CACHE_VERSION, "data": to_dict(config), "pipeline": pipeline.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_data(config: DataConfig, pipeline: Pipeline, *, seed: int = 0) -> PreparedData:
    """Load the cached dataset for ``config``, or build and cache it."""
    path = Path(config.cache_dir) / f"data-{cache_key(config, pipeline)}.npz"
    if path.exists():
        log.info(f"data: using cache {path}")
        return PreparedData.load(path)
    data = build_data(config, pipeline, seed=seed)
    data.save(path)
    log.info(f"data: cached to {path}")
    return data


def _group_key(scaffold: str | None, ik14: str, scaffold_counts: dict[str, int]) -> str:
    if scaffold and scaffold_counts.get(scaffold, 0) <= 50:
        return "s:" + scaffold
    return "k:" + ik14


def _in_calibration(key: str, fraction: float) -> bool:
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return digest % 10_000 < fraction * 10_000


def build_data(config: DataConfig, pipeline: Pipeline, *, seed: int = 0) -> PreparedData:
    """Filter, preprocess and featurise (see module docs). Deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    table: Any = pq.read_table(config.spectra)
    table = table.filter(pc.is_in(table.column("split"), pa.array(["train", "val"])))
    table = table.filter(pc.and_(pc.is_valid(table.column("precursor_mz")),
                                 pc.is_valid(table.column("ion_mode"))))
    split = np.asarray(table.column("split").to_pylist())
    if config.licenses:
        lic_ok = np.asarray(pc.is_in(table.column("license"), pa.array(list(config.licenses)))
                            .to_numpy(zero_copy_only=False))
        keep = (split == "val") | lic_ok
        table, split = table.filter(pa.array(keep)), split[keep]
    log.info(f"data: {table.num_rows} spectra after split/licence filter")

    # --- structure subsets for smoke runs (whole structures)
    ik14 = np.asarray(table.column("inchikey14").to_pylist(), dtype=str)
    for name, limit in (("train", config.max_train_structures), ("val", config.max_val_structures)):
        if limit:
            uniq = np.unique(ik14[split == name])
            picked = set(rng.choice(uniq, size=min(limit, uniq.shape[0]), replace=False).tolist())
            keep = (split != name) | np.isin(ik14, list(picked))
            table, split, ik14 = table.filter(pa.array(keep)), split[keep], ik14[keep]

    # --- preprocess peaks and the clean flag
    n = table.num_rows
    prec = np.asarray(table.column("precursor_mz").to_numpy(), dtype=np.float64)
    flat = preprocess_flat(Peaks.from_arrow(table), pipeline)
    n_peaks = flat.n_peaks
    instrument = [s or "" for s in table.column("instrument_type").to_pylist()]
    hires = (np.array([bool(re.search(config.instrument_pattern, s)) for s in instrument])
             if config.instrument_pattern else np.ones(n, bool))
    ppm = np.asarray(table.column("precursor_ppm_error").to_numpy(zero_copy_only=False), dtype=np.float64)
    blacklisted = np.asarray(table.column("legacy_blacklisted").fill_null(False).to_numpy(zero_copy_only=False))
    clean = hires & (n_peaks >= config.min_peaks) & (np.abs(np.nan_to_num(ppm, nan=np.inf))
                                                     <= config.max_precursor_ppm_error)
    if config.drop_blacklisted:
        clean &= ~blacklisted.astype(bool)

    # --- scaffold-grouped calibration fold inside train
    scaffold = table.column("murcko_scaffold").to_pylist()
    train_scaffolds = [s for s, sp in zip(scaffold, split, strict=True) if sp == "train" and s]
    uniq_pairs = {(s, k) for s, k, sp in zip(scaffold, ik14, split, strict=True) if sp == "train" and s}
    scaffold_counts: dict[str, int] = {}
    for s, _ in uniq_pairs:
        scaffold_counts[s] = scaffold_counts.get(s, 0) + 1
    del train_scaffolds
    spec_split = np.full(n, VAL, dtype=np.int8)
    for i in np.flatnonzero(split == "train"):
        key = _group_key(scaffold[i], ik14[i], scaffold_counts)
        spec_split[i] = CALIB if _in_calibration(key, config.calibration_fraction) else TRAIN

    # --- structures: train ones need a clean training spectrum
    keep = (spec_split != TRAIN) | clean
    smiles_all = np.asarray(table.column("smiles").to_pylist(), dtype=str)
    formula_all = np.asarray(table.column("formula").to_pylist(), dtype=str)
    mass_all = np.asarray(table.column("exact_mass").to_numpy(), dtype=np.float64)
    struct_ik14, inverse = np.unique(ik14[keep], return_inverse=True)
    rows_kept = np.flatnonzero(keep)
    s_count = struct_ik14.shape[0]
    struct_smiles = np.empty(s_count, dtype=object)
    struct_formula = np.empty(s_count, dtype=object)
    struct_mass = np.zeros(s_count)
    struct_split = np.zeros(s_count, dtype=np.int8)
    by_struct: dict[int, list[int]] = {}
    for r, s in zip(rows_kept, inverse, strict=True):
        by_struct.setdefault(int(s), []).append(int(r))
    for s, rows in by_struct.items():
        values, counts = np.unique(smiles_all[rows], return_counts=True)
        struct_smiles[s] = values[np.argmax(counts)]
        struct_formula[s] = formula_all[rows[0]]
        struct_mass[s] = mass_all[rows[0]]
        struct_split[s] = spec_split[rows[0]]
    log.info(f"data: {s_count} structures (train {(struct_split == TRAIN).sum()}, calibration "
        f"{(struct_split == CALIB).sum()}, val {(struct_split == VAL).sum()}); clean spectra: "
        + ", ".join(f"{name} {int((clean & keep & (spec_split == k)).sum())}"
                    for k, name in enumerate(SPLIT_NAMES)))

    # --- fingerprints and graphs of the structures
    from rdkit.Chem import rdFingerprintGenerator

    from engine.models.encoders.featurize import mol_from_smiles

    gen = rdFingerprintGenerator.GetRDKitFPGenerator(fpSize=FP_BITS)
    fps = np.zeros((s_count, FP_BITS // 8), dtype=np.uint8)
    graphs = []
    for s in tqdm(range(s_count), desc="structures", mininterval=10):
        mol = mol_from_smiles(str(struct_smiles[s]))
        fps[s] = np.packbits(gen.GetFingerprintAsNumPy(mol).astype(bool))
        graphs.append(featurize(str(struct_smiles[s])))

    # --- hard-negative pools for training structures
    neg_ptr = np.zeros(s_count + 1, dtype=np.int64)
    pools: list[npt.NDArray[np.int64]] = [np.zeros(0, np.int64)] * s_count
    neg_graph_rows: dict[int, int] = {}
    neg_graphs = []
    if config.negative_pool > 0:
        from engine.models.training.candidates import CandidateTable

        log.info("data: loading candidates")
        cands = CandidateTable.load(config.candidates)
        library = {str(k) for k in pq.read_table(config.spectra, columns=["inchikey14"])
                   .column("inchikey14").to_pylist()}
        excluded = cands.rows_of(library)
        n_formula = round(config.negative_pool * config.formula_share)
        for s in tqdm(np.flatnonzero(struct_split == TRAIN), desc="negative pools", mininterval=10):
            same = cands.same_formula(str(struct_formula[s]))
            same = same[~excluded[same]]
            chosen = (rng.choice(same, size=min(n_formula, same.shape[0]), replace=False) if same.shape[0]
                      else same)
            near = cands.nearest_mass(float(struct_mass[s]), config.mass_neighbours)
            near = near[~excluded[near] & ~np.isin(near, chosen)]
            n_near = config.negative_pool - chosen.shape[0]
            if near.shape[0]:
                near = rng.choice(near, size=min(n_near, near.shape[0]), replace=False)
            pools[s] = np.concatenate([chosen, near]).astype(np.int64)
        uniq_rows = np.unique(np.concatenate(pools)) if s_count else np.zeros(0, np.int64)
        smiles_rows = cands.smiles_of(uniq_rows)
        for row, smi in tqdm(list(zip(uniq_rows.tolist(), smiles_rows, strict=True)),
                             desc="negative graphs", mininterval=10):
            try:
                neg_graphs.append(featurize(smi))
            except ValueError:
                continue
            neg_graph_rows[row] = s_count + len(neg_graphs) - 1
        del cands
    neg_lists = [np.array([neg_graph_rows[r] for r in pools[s].tolist() if r in neg_graph_rows], np.int64)
                 for s in range(s_count)]
    neg_ptr[1:] = np.cumsum([p.shape[0] for p in neg_lists])
    store = GraphStore.from_graphs(graphs + neg_graphs)
    log.info(f"data: {len(neg_graphs)} negative molecules, {int(neg_ptr[-1])} pool entries")

    # --- spectra of the kept rows, in order
    counts_kept = n_peaks[rows_kept]
    ptr = np.concatenate([[0], np.cumsum(counts_kept)]).astype(np.int64)
    all_ptr = np.concatenate([[0], np.cumsum(n_peaks)]).astype(np.int64)
    idx = concat_ranges(all_ptr[rows_kept], counts_kept)
    return PreparedData(
        spec_ptr=ptr, mz=flat.mz[idx], intensity=flat.intensity[idx], precursor_mz=prec[rows_kept],
        ion_positive=np.asarray(table.column("ion_mode").to_pylist(), dtype=str)[rows_kept] == "positive",
        spec_struct=inverse.astype(np.int64), spec_split=spec_split[rows_kept], spec_clean=clean[rows_kept],
        spectrum_id=np.asarray(table.column("spectrum_id").to_pylist(), dtype=str)[rows_kept],
        struct_smiles=struct_smiles.astype(str), struct_ik14=struct_ik14.astype(str),
        struct_formula=struct_formula.astype(str), struct_mass=struct_mass, struct_split=struct_split,
        fingerprints=fps, graph_x=store.x, graph_edge_index=store.edge_index, graph_edge_attr=store.edge_attr,
        graph_atom_ptr=store.atom_ptr, graph_edge_ptr=store.edge_ptr, neg_ptr=neg_ptr,
        neg_rows=np.concatenate(neg_lists) if neg_lists else np.zeros(0, np.int64))


def tanimoto_matrix(bits_a: npt.NDArray[np.uint8], bits_b: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Tanimoto similarity between every row of two unpacked bit matrices."""
    import torch

    a = torch.from_numpy(bits_a.astype(np.float32))
    b = torch.from_numpy(bits_b.astype(np.float32))
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)).numpy()


def massbank_batch(table: Any) -> pa.RecordBatch:
    """Rows of the MassBank development Parquet as a record batch of the engine's spectrum schema."""
    from engine.core.records import Spectrum
    from engine.core.schema import spectra_to_batch

    cols = {c: table.column(c).to_pylist() for c in ("spectrum_id", "precursor_mz", "charge", "ion_mode",
                                                      "adduct", "smiles", "inchikey", "formula", "name")}
    mz, inten = table.column("mz").to_pylist(), table.column("intensity").to_pylist()
    spectra = [Spectrum(spectrum_id=cols["spectrum_id"][i], mz=np.asarray(mz[i], np.float64),
                        intensity=np.asarray(inten[i], np.float32), precursor_mz=cols["precursor_mz"][i],
                        charge=cols["charge"][i], ion_mode=cols["ion_mode"][i], adduct=cols["adduct"][i],
                        smiles=cols["smiles"][i], inchikey=cols["inchikey"][i], formula=cols["formula"][i],
                        name=cols["name"][i], source_file="massbank")
               for i in range(table.num_rows)]
    return spectra_to_batch(spectra)


def write_attribution(data: PreparedData, spectra_path: str | Path, out: str | Path) -> int:
    """Write accession, licence, contributor and copyright of every record the model learned from
    (clean training spectra and all calibration spectra) as a gzipped TSV; return the row count."""
    import gzip

    used = ((data.spec_split == TRAIN) & data.spec_clean) | (data.spec_split == CALIB)
    ids = set(data.spectrum_id[used].tolist())
    table = pq.read_table(spectra_path, columns=["spectrum_id", "license", "contributor", "copyright"])
    rows = [r for r in table.to_pylist() if r["spectrum_id"] in ids]
    rows.sort(key=lambda r: r["spectrum_id"])
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        fh.write("accession\tlicense\tcontributor\tcopyright\n")
        for r in rows:
            fh.write("\t".join(str(r[k] or "").replace("\t", " ").replace("\n", " ")
                               for k in ("spectrum_id", "license", "contributor", "copyright")) + "\n")
    return len(rows)
