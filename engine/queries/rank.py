"""Candidate ranking: order each query's candidate structures by the cosine of spectrum and molecule embeddings.

Candidates come as one long table (:data:`~engine.queries.candidates.CANDIDATE_SCHEMA`). Each distinct
SMILES is embedded once per call (invalid SMILES are skipped and counted); missing InChIKeys and
formulas are filled in with RDKit. ``cosine`` is the spectrum-molecule cosine; ``score`` is the cosine,
lowered when library evidence is given and the candidate's own reference spectra do not match the query
(:mod:`engine.queries.evidence`; ``library_similarity`` is then the best such match, null where the
candidate has none) and raised by the fragment evidence when a fragment scorer is given
(:mod:`engine.queries.fragments`: ``fragment_score`` is the term added, ``explained_share`` the share of
the query's peak weight that the candidate's in-silico fragments explain); ``probability`` a softmax of
the scores over the query's candidates at the model's contrastive temperature (when it has one), i.e. how
the model would split its belief among them.

With ensemble ``members`` (other joint models, e.g. the bundled ``engine/data/model/members``), ``cosine``
is the mean of the spectrum-molecule cosines of the model and every member, each in its own space, and
the score starts from :data:`ENSEMBLE_COSINE_SCALE` times that mean (a mean of cosines spreads less than
one model's), and the fragment evidence enters with the ensemble's own weights (:data:`ENSEMBLE_FRAGMENT_WEIGHTS`,
fitted with the factor on train's calibration fold; a scorer's weights apply to one model). On clean val the
bundled ensemble (the model and three members) lifts mass256 + fragments hit@1 from 53.8% to 58.0%
(``benchmarks/model/ensemble_fit.py``). Library evidence and the probability's temperature stay the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.peaks import Peaks
from engine.core.preprocess import Pipeline
from engine.core.schema import column, versioned_schema
from engine.models.encoders.base import MoleculeEmbedder, SpectrumEmbedder
from engine.models.rdkit_util import parse_smiles
from engine.queries.evidence import LibraryEvidence
from engine.queries.fragments import FragmentScorer, FragmentWeights
from engine.queries.hits import as_batch, top_per_query

#: Factor on an ensemble's mean cosine, chosen among 0.75 / 1 / 1.25 / 1.5 / 2 / 3 on train's calibration fold
#: (clean, redistributable; held out of every bundled member's training) by candidate ranking with fragment
#: evidence (formula and mass256 hit@1 both best at 1.5 with two members; with three, 1.5 again best of 1 / 1.5 / 2,
#: RESULTS.md ``model-ensemble4-fold``); never on val.
ENSEMBLE_COSINE_SCALE = 1.5
#: Fragment-evidence weights of an ensemble's score (share, recall, size), chosen with the cosine factor by a grid
#: search (factor 1-2.5 x share 0.5-1 x recall 0.25-1 x size 0-0.075) on the same fold by the mean of formula and
#: mass256 hit@1 (RESULTS.md ``model-ensemble-fit``: fold mass256 55.0% -> 55.6%, formula 63.7% -> 63.8%); a
#: single model keeps the scorer's own weights.
ENSEMBLE_FRAGMENT_WEIGHTS = FragmentWeights(share=1.0, recall=0.75, size=0.05)

RANK_SCHEMA = versioned_schema([
    "query_id", "rank", "score", column("smiles", nullable=False), "inchikey", "formula",
    pa.field("probability", pa.float32()), "n_candidates", "quality", pa.field("cosine", pa.float32()),
    pa.field("library_similarity", pa.float32()), pa.field("fragment_score", pa.float32()),
    pa.field("explained_share", pa.float32()),
])


@dataclass
class RankReport:
    """Counts of one ranking run."""

    queries: int = 0
    queries_without_candidates: int = 0
    candidates: int = 0
    invalid_smiles: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    candidates_with_references: int = 0
    candidates_demoted: int = 0
    candidates_fragmented: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "queries_without_candidates": self.queries_without_candidates,
                "candidates": self.candidates, "invalid_smiles": self.invalid_smiles,
                "invalid_examples": self.invalid_examples[:10],
                "candidates_with_references": self.candidates_with_references,
                "candidates_demoted": self.candidates_demoted,
                "candidates_fragmented": self.candidates_fragmented}


def fill_identifiers(smiles: Sequence[str]) -> tuple[list[str | None], list[str | None]]:
    """InChIKey and formula (RDKit) of each SMILES; None where it does not parse."""
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    keys: list[str | None] = []
    formulas: list[str | None] = []
    for smi in smiles:
        mol = parse_smiles(smi)
        keys.append(Chem.MolToInchiKey(mol) or None if mol is not None else None)
        formulas.append(CalcMolFormula(mol) if mol is not None else None)
    return keys, formulas


def _identifiers(table: pa.Table) -> tuple[list[str | None], list[str | None]]:
    """InChIKey and formula of each row of a candidate table, missing ones (or missing columns) filled in
    with RDKit."""
    n = table.num_rows
    none: list[str | None] = [None] * n
    keys: list[str | None] = table.column("inchikey").to_pylist() if "inchikey" in table.column_names else none
    formulas: list[str | None] = (table.column("formula").to_pylist() if "formula" in table.column_names
                                  else list(none))
    missing = [i for i, (k, f) in enumerate(zip(keys, formulas, strict=True)) if not k or not f]
    if missing:
        smiles = table.column("smiles")
        fk, ff = fill_identifiers([str(smiles[i].as_py()) for i in missing])
        for j, i in enumerate(missing):
            keys[i] = keys[i] or fk[j]
            formulas[i] = formulas[i] or ff[j]
    return keys, formulas


def _embed_unique(model: MoleculeEmbedder, smiles: list[str], report: RankReport
                  ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Embeddings of ``smiles`` (rows of invalid ones are zero) and the validity mask."""
    embed_molecules = getattr(model, "embed_molecules", None)
    if embed_molecules is not None:
        out = embed_molecules(smiles, on_invalid="skip")
        emb = np.zeros((len(smiles), model.dim), dtype=np.float32)
        emb[out.valid] = out.embeddings
        valid = np.asarray(out.valid, dtype=bool)
    else:  # a plain MoleculeEmbedder: embed one by one on failure
        from engine.core.errors import InvalidMoleculeError

        try:
            emb = model.embed_smiles(smiles)
            valid = np.ones(len(smiles), dtype=bool)
        except InvalidMoleculeError:
            emb = np.zeros((len(smiles), model.dim), dtype=np.float32)
            valid = np.zeros(len(smiles), dtype=bool)
            for i, smi in enumerate(smiles):
                try:
                    emb[i] = model.embed_smiles([smi])[0]
                    valid[i] = True
                except InvalidMoleculeError:
                    pass
    bad = [smiles[i] for i in np.flatnonzero(~valid)]
    report.invalid_smiles += len(bad)
    report.invalid_examples.extend(bad[: max(0, 10 - len(report.invalid_examples))])
    return emb, valid


def rank_candidates(queries: pa.RecordBatch | pa.Table, candidates: pa.Table, model: Any, *, top_k: int = 20,
                    report: RankReport | None = None,
                    embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
                    evidence: LibraryEvidence | None = None, fragments: FragmentScorer | None = None,
                    peaks: Peaks | None = None, members: Sequence[Any] = ()) -> pa.Table:
    """Rank each query's candidates (rows of ``candidates`` with its ``query_id``); top ``top_k`` per query.

    ``model`` embeds spectra and molecules into one space (:class:`~engine.models.model.JointModel`); ``evidence``
    (reference spectra embedded by the same model) demotes candidates whose references do not match;
    ``fragments`` adds the candidate's fragment score (how well its in-silico fragments explain the query's
    peaks, and how many of its likely fragments the query shows). ``peaks`` are the queries' peaks when
    unpacked already (:meth:`Peaks.from_arrow`), shared with the embedding and the searches of a chunk.
    ``members``: other joint models whose cosines are averaged with the model's (see module docs).
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    report = report if report is not None else RankReport()
    batch = as_batch(queries)
    report.queries += batch.num_rows
    spectrum_model: SpectrumEmbedder = model
    peaks = peaks if peaks is not None else Peaks.from_arrow(batch)
    emb, quality = embeddings if embeddings is not None else spectrum_model.embed_spectra(batch, peaks=peaks)
    qids = batch.column("spectrum_id").to_pylist()
    position = {q: i for i, q in enumerate(qids)}
    cand_q = candidates.column("query_id").to_pylist()
    sel = np.asarray([q in position for q in cand_q], dtype=bool)
    cand = candidates.filter(pa.array(sel)) if not sel.all() else candidates
    qi = np.asarray([position[q] for q in cand.column("query_id").to_pylist()], dtype=np.int64)
    report.queries_without_candidates += batch.num_rows - np.unique(qi).shape[0]
    if cand.num_rows == 0:
        return RANK_SCHEMA.empty_table()
    smiles = cand.column("smiles").to_pylist()
    uniq, inverse = np.unique(np.asarray(smiles, dtype=object).astype(str), return_inverse=True)
    mol_emb, valid = _embed_unique(model, uniq.tolist(), report)
    ok = valid[inverse]
    qi, inverse = qi[ok], inverse[ok]
    cand = cand.filter(pa.array(ok))
    report.candidates += cand.num_rows
    cosine = np.einsum("ij,ij->i", emb[qi].astype(np.float64), mol_emb[inverse].astype(np.float64))
    if members:
        from engine.models.encoders.featurize import GraphStore, featurize

        # RDKit featurisation does not depend on the model: once for every member
        graphs = GraphStore.from_graphs([featurize(smi) for smi in uniq[valid].tolist()])
        cosine = (cosine + sum(_member_cosine(m, batch, peaks, graphs, valid, qi, inverse)
                               for m in members)) / (1 + len(members))
    base = cosine * (ENSEMBLE_COSINE_SCALE if members else 1.0)
    score, lib_sim = base, np.full(cosine.shape[0], np.nan)
    identifiers: tuple[list[str | None], list[str | None]] | None = None
    if evidence is not None:
        if evidence.encoder_hash != getattr(model, "encoder_hash", evidence.encoder_hash):
            from engine.core.errors import IncompatibleArtifactError

            raise IncompatibleArtifactError("library evidence was embedded by another model "
                                            f"({evidence.encoder_hash}, ranking model {model.encoder_hash})")
        identifiers = _identifiers(cand)
        modes = batch.column("ion_mode").to_pylist() if "ion_mode" in batch.schema.names else [None] * len(qids)
        lib_sim = evidence.similarity(emb, modes, qi, identifiers[0], evidence.query_peaks(peaks))
        score = evidence.adjust(base, lib_sim)
        report.candidates_with_references += int(np.isfinite(lib_sim).sum())
        report.candidates_demoted += int((score < base).sum())
    frag = share = np.full(cosine.shape[0], np.nan)
    if fragments is not None:
        frag, share = fragment_scores(fragments, batch, model, qi, uniq[inverse].tolist(), peaks=peaks,
                                      weights=ENSEMBLE_FRAGMENT_WEIGHTS if members else None)
        score = score + np.nan_to_num(frag)
        report.candidates_fragmented += int(np.isfinite(frag).sum())
    scale = _logit_scale(model)
    counts = np.bincount(qi, minlength=batch.num_rows)
    prob = None
    if scale is not None:
        z = score * scale
        zmax = np.full(batch.num_rows, -np.inf)
        np.maximum.at(zmax, qi, z)
        ez = np.exp(z - zmax[qi])
        prob = ez / np.bincount(qi, weights=ez, minlength=batch.num_rows)[qi]
    keep, rank = top_per_query(qi, score, top_k)
    kept = cand.take(keep)
    if identifiers is not None:  # already filled in for every candidate
        keys, formulas = [identifiers[0][i] for i in keep], [identifiers[1][i] for i in keep]
    else:
        keys, formulas = _identifiers(kept)
    return pa.table({
        "query_id": pa.array([qids[i] for i in qi[keep]], pa.string()),
        "rank": pa.array(rank, pa.int32()),
        "score": pa.array(score[keep].astype(np.float32)),
        "smiles": kept.column("smiles").cast(pa.string()),
        "inchikey": pa.array(keys, pa.string()),
        "formula": pa.array(formulas, pa.string()),
        "probability": (pa.array(prob[keep].astype(np.float32)) if prob is not None
                        else pa.nulls(len(keep), pa.float32())),
        "n_candidates": pa.array(counts[qi[keep]].astype(np.int32)),
        "quality": pa.array(np.asarray(quality, dtype=np.float32)[qi[keep]]),
        "cosine": pa.array(cosine[keep].astype(np.float32)),
        "library_similarity": pa.array(lib_sim[keep].astype(np.float32), from_pandas=True),
        "fragment_score": pa.array(frag[keep].astype(np.float32), from_pandas=True),
        "explained_share": pa.array(share[keep].astype(np.float32), from_pandas=True),
    }, schema=RANK_SCHEMA)


def _member_cosine(member: Any, batch: pa.RecordBatch, peaks: Peaks, graphs: Any, valid: npt.NDArray[np.bool_],
                   qi: npt.NDArray[np.int64], inverse: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Spectrum-molecule cosine of each (query ``qi[k]``, unique molecule ``inverse[k]``) pair in an ensemble
    member's space; ``graphs`` holds the featurised molecules that the model could embed (``valid``)."""
    emb, _ = member.embed_spectra(batch, peaks=peaks)
    mol = np.zeros((valid.shape[0], member.dim), dtype=np.float32)
    mol[valid] = member.embed_graphs(graphs)
    return np.einsum("ij,ij->i", emb[qi].astype(np.float64), mol[inverse].astype(np.float64))


def fragment_scores(scorer: FragmentScorer, batch: pa.RecordBatch, model: Any, qi: npt.NDArray[np.int64],
                    smiles: list[str], *, peaks: Peaks | None = None, weights: FragmentWeights | None = None
                    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Fragment score and explained share of each (query ``batch`` row ``qi[k]``, candidate ``smiles[k]``)
    pair, on the peaks (``peaks``, else read from ``batch``) as the model's pipeline leaves them (the
    embedding's preprocessing of the same container, made once); ``weights`` instead of the scorer's own."""
    from engine.models.encoders.spectrum import preprocess_flat
    from engine.models.model import model_pipeline

    pipeline = getattr(model, "pipeline", None)
    peaks = preprocess_flat(peaks if peaks is not None else Peaks.from_arrow(batch),
                            pipeline if isinstance(pipeline, Pipeline) else model_pipeline())
    names = batch.schema.names
    modes = batch.column("ion_mode").to_pylist() if "ion_mode" in names else [None] * batch.num_rows
    adducts = batch.column("adduct").to_pylist() if "adduct" in names else [None] * batch.num_rows
    return scorer.score_pairs(peaks, modes, adducts, qi, smiles, weights=weights)


def _logit_scale(model: Any) -> float | None:
    """exp(logit_scale) of a contrastively trained model, else None."""
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        return None
    try:
        return float(np.exp(float(scale.detach().cpu().item())))
    except AttributeError:
        return float(np.exp(float(scale)))
