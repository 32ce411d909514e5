"""Annotate one chunk of spectra: embed once, then library match, analogue search and candidate ranking.

The result has one row per query spectrum (``query_id`` = its spectrum id) with the top identity hit,
the top analogue (with the mass difference), the top candidate structure when candidates are given, the
embedding quality and a ``low_quality`` flag. An :class:`Annotator` is built from paths
(:class:`AnnotatorSpec`) so that Ray workers can rebuild it where they run.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.core.paths import CALIBRATION_DIR
from engine.core.peaks import Peaks
from engine.core.schema import SCHEMA_VERSION, versioned_schema
from engine.jobs.artifacts import open_library_and_model, open_members, open_molecules
from engine.jobs.rerun import digest_contents, digest_files
from engine.jobs.settings import AnnotateSettings, AnnotatorSpec
from engine.models.device import resolve_device
from engine.queries.candidate_sources import CandidateSource, candidate_source
from engine.queries.references import References

__all__ = ["ANNOTATION_SCHEMA", "AnnotateSettings", "Annotator", "AnnotatorSpec"]

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

_FIELDS: list[pa.Field | str] = [
    "query_id", "source_file", "record_index", "precursor_mz", "ion_mode", "retention_time", "n_peaks", "quality",
    pa.field("low_quality", pa.bool_()),
    pa.field("identity_score", pa.float32()),
    pa.field("identity_library_id", pa.string()),
    pa.field("identity_name", pa.string()),
    pa.field("identity_smiles", pa.string()),
    pa.field("identity_inchikey", pa.string()),
    pa.field("identity_spectral_similarity", pa.float32()),
    #: target-decoy q-value of the identity match over the whole job (libraries with decoys; set when the
    #: job ends, see engine.jobs.fdr) and the best decoy's score it competed with (engine.queries.fdr)
    pa.field("identity_q_value", pa.float32()),
    pa.field("identity_decoy_score", pa.float32()),
    pa.field("analogue_score", pa.float32()),
    pa.field("analogue_library_id", pa.string()),
    pa.field("analogue_name", pa.string()),
    pa.field("analogue_smiles", pa.string()),
    pa.field("analogue_inchikey", pa.string()),
    pa.field("analogue_mass_difference", pa.float64()),
    pa.field("analogue_ion_mode", pa.string()),
    pa.field("candidate_score", pa.float32()),
    pa.field("candidate_smiles", pa.string()),
    pa.field("candidate_inchikey", pa.string()),
    pa.field("candidate_formula", pa.string()),
    "n_candidates",
    #: why candidate ranking skipped this spectrum (e.g. unknown_adduct, missing_formula); null when ranked
    pa.field("candidates_skipped_reason", pa.string()),
    #: candidates of this spectrum dropped because RDKit cannot read their SMILES
    pa.field("candidates_invalid", pa.int32()),
]
ANNOTATION_SCHEMA = versioned_schema(_FIELDS)
QUERY_COLUMNS = ("spectrum_id", "source_file", "record_index", "precursor_mz", "ion_mode", "retention_time",
                 "n_peaks")


class Annotator:
    """Holds the model, the opened library and the candidate table; annotates chunks."""

    def __init__(self, spec: AnnotatorSpec) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.library, self.model = open_library_and_model(spec.resolved_library(), spec.model,
                                                          device=resolve_device(spec.device))
        self.references = References(self.library)
        self.quality_threshold = float(getattr(getattr(self.model, "quality_model", None), "threshold", 0.5))
        self.candidates: CandidateSource | None = None
        if spec.candidates:
            s = spec.settings
            self.candidates = candidate_source(
                candidates_path=spec.candidates, pubchem=s.pubchem, pubchem_cache=spec.pubchem_cache,
                pubchem_timeout_s=spec.pubchem_timeout, by=s.candidates_by, tolerance_ppm=s.candidate_tolerance_ppm,
                bundled_fallback=False, on_unusable="skip", table=open_molecules(spec.candidates))
        self.members = (open_members((), bundled=True, model=self.model, device=resolve_device(spec.device))
                        if spec.candidates and self.settings.candidate_ensemble else [])
        self._evidence: Any = None
        self._fragments: Any = None
        if self.settings.fragment_scoring and spec.candidates:   # only candidate ranking uses it
            from engine.queries.fragments import FragmentScorer

            self._fragments = FragmentScorer()   # fragments of each candidate computed once per worker
        self.seconds: dict[str, float] = defaultdict(float)

    def fingerprint(self) -> dict[str, Any]:
        """What the results depend on; a change invalidates earlier results of a job."""
        lib = self.spec.resolved_library()
        members = {"ensemble_members": [m.encoder_hash for m in self.members]} if self.members else {}
        return {
            "engine_schema_version": SCHEMA_VERSION,
            "encoder_hash": self.model.encoder_hash,
            "library": str(lib.resolve()),
            "library_digest": digest_files([lib]),
            "candidates": digest_files([Path(self.spec.candidates)]) if self.spec.candidates else None,
            "calibrations": digest_contents(sorted(CALIBRATION_DIR.glob("*.json"))),
            "settings": asdict(self.settings),
            **members,
        }

    def embed(self, batch: pa.RecordBatch, peaks: Peaks | None = None
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Embeddings and quality of ``batch`` (``peaks``: its peaks, when unpacked already)."""
        t = time.perf_counter()
        if batch.num_rows == 0:
            out = (np.zeros((0, self.model.dim), np.float32), np.zeros(0, np.float32))
        else:
            out = self.model.embed_spectra(batch, peaks=peaks)
        self.seconds["embed"] += time.perf_counter() - t
        return out

    def search(self, batch: pa.RecordBatch, emb: npt.NDArray[np.float32],
               quality: npt.NDArray[np.float32], peaks: Peaks | None = None) -> pa.Table:
        """One annotation row per spectrum of ``batch`` given its embeddings; ``peaks`` (the chunk's peaks,
        unpacked once and read by every stage) are unpacked here when not given."""
        from engine.queries.analogue import AnalogueSettings, analogue_search
        from engine.queries.identity import IdentitySettings, identity_search_tdc

        if batch.num_rows == 0:
            return ANNOTATION_SCHEMA.empty_table()
        t = time.perf_counter()
        s = self.settings
        peaks = peaks if peaks is not None else Peaks.from_arrow(batch)
        ident, contest = identity_search_tdc(
            batch, self.library, self.references, self.model, embeddings=(emb, quality), peaks=peaks,
            settings=IdentitySettings(top_k=1, precursor_tolerance_ppm=s.precursor_tolerance_ppm))
        analog = analogue_search(batch, self.library, self.references, self.model,
                                 settings=AnalogueSettings(top_k=1, max_mass_difference=s.max_mass_difference,
                                                           n_candidates=s.analogue_candidates,
                                                           same_ion_mode=not s.cross_mode),
                                 embeddings=(emb, quality), peaks=peaks)
        self.seconds["search"] += time.perf_counter() - t
        ranked, drops = None, dict[str, pa.Array]()
        if self.candidates is not None:
            t = time.perf_counter()
            ranked, drops = self._rank(batch, emb, quality, peaks)
            self.seconds["rank"] += time.perf_counter() - t
        table = with_decoy_scores(self._assemble(batch, quality, ident, analog, ranked, drops), contest)
        # the embeddings travel with the results: engine network reuses them instead of embedding again
        return table.append_column("embedding", pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(emb, dtype=np.float32).ravel()), emb.shape[1]))

    def __call__(self, batch: pa.RecordBatch) -> pa.Table:
        peaks = Peaks.from_arrow(batch)   # the chunk's peaks, unpacked once for every stage
        emb, quality = self.embed(batch, peaks)
        return self.search(batch, emb, quality, peaks)

    def _rank(self, batch: pa.RecordBatch, emb: npt.NDArray[np.float32], quality: npt.NDArray[np.float32],
              peaks: Peaks) -> tuple[pa.Table, dict[str, pa.Array]]:
        """Ranked candidates, and per spectrum why it was skipped (the selection cannot use it) and how many
        of its candidates were dropped for unreadable SMILES."""
        from engine.queries.rank import rank_candidates

        assert self.candidates is not None
        cands, unusable = self.candidates.select(batch)
        ranked = rank_candidates(batch, cands, self.model, top_k=1, embeddings=(emb, quality),
                                 evidence=self.evidence(), fragments=self._fragments, peaks=peaks, members=self.members)
        ids = batch.column("spectrum_id").to_pylist()
        selected = Counter(cands.column("query_id").to_pylist())
        top1 = ranked.filter(pc.field("rank") == 1) if ranked.num_rows else ranked
        kept = dict(zip(top1.column("query_id").to_pylist(), top1.column("n_candidates").to_pylist(), strict=True))
        drops: dict[str, pa.Array] = {
            "candidates_skipped_reason": pa.array([unusable.get(str(q)) for q in ids], pa.string()),
            "candidates_invalid": pa.array([selected.get(q, 0) - (kept.get(q) or 0) for q in ids], pa.int32())}
        return ranked, drops

    def evidence(self) -> Any:
        """The library's reference spectra as candidate-ranking evidence (read once), or None when off."""
        if not self.settings.library_evidence:
            return None
        if self._evidence is None:
            from engine.queries.evidence import LibraryEvidence

            self._evidence = LibraryEvidence.from_library(self.library, encoder_hash=self.model.encoder_hash,
                                                          dim=self.model.dim, references=self.references)
        return self._evidence

    def _assemble(self, batch: pa.RecordBatch, quality: npt.NDArray[np.float32], ident: pa.Table,
                  analog: pa.Table, ranked: pa.Table | None, drops: dict[str, pa.Array]) -> pa.Table:
        n = batch.num_rows
        qids = batch.column("spectrum_id")
        cols: dict[str, Any] = {"query_id": qids}
        for c in QUERY_COLUMNS[1:]:
            cols[c] = batch.column(c)
        cols["quality"] = pa.array(quality.astype(np.float32))
        cols["low_quality"] = pa.array(quality < self.quality_threshold)

        def top(table: pa.Table, mapping: dict[str, str]) -> None:
            top1 = table.filter(pc.field("rank") == 1) if table.num_rows else table
            pos = pc.index_in(qids, value_set=top1.column("query_id").combine_chunks())
            for out_name, src in mapping.items():
                ftype = ANNOTATION_SCHEMA.field(out_name).type
                if top1.num_rows == 0:
                    cols[out_name] = pa.nulls(n, ftype)
                else:
                    cols[out_name] = pc.take(top1.column(src), pos).cast(ftype)

        top(ident, {"identity_score": "score", "identity_library_id": "library_id", "identity_name": "name",
                    "identity_smiles": "smiles", "identity_inchikey": "inchikey",
                    "identity_spectral_similarity": "spectral_similarity"})
        top(analog, {"analogue_score": "score", "analogue_library_id": "library_id", "analogue_name": "name",
                     "analogue_smiles": "smiles", "analogue_inchikey": "inchikey",
                     "analogue_mass_difference": "mass_difference", "analogue_ion_mode": "ion_mode"})
        if ranked is not None:
            top(ranked, {"candidate_score": "score", "candidate_smiles": "smiles",
                         "candidate_inchikey": "inchikey", "candidate_formula": "formula",
                         "n_candidates": "n_candidates"})
        cols.update(drops)
        for f in ANNOTATION_SCHEMA:
            if f.name not in cols:
                cols[f.name] = pa.nulls(n, f.type)
        return pa.Table.from_arrays([cols[f.name] for f in ANNOTATION_SCHEMA], schema=ANNOTATION_SCHEMA)


def with_decoy_scores(table: pa.Table, contest: pa.Table | None) -> pa.Table:
    """``identity_decoy_score`` of each row from the batch's target-decoy competition (None: no decoys)."""
    if contest is None or table.num_rows == 0:
        return table
    pos = pc.index_in(table.column("query_id"), value_set=contest.column("query_id").combine_chunks())
    i = table.schema.get_field_index("identity_decoy_score")
    return table.set_column(i, table.schema.field(i),
                            pc.take(contest.column("decoy_score"), pos).cast(pa.float32()))
