"""Analogue search: library spectra of structurally similar compounds, across all precursor masses.

Candidates are the ``n_candidates`` nearest library spectra by embedding cosine (same ion mode by
default; within ``max_mass_difference`` Da of the query precursor when given). Each candidate gets
features in the spirit of MS2Query (de Jonge et al. 2023): the embedding cosine, the modified cosine
and entropy similarity, the same aggregated over all retrieved spectra of the candidate's structure
(mean / maximum: a structure recorded several times gathers evidence), the precursor mass difference,
and the embedding qualities. Two small models fitted on the calibration fold
of ``train`` (structures the model never saw) use them: a linear **ranker** (listwise-fitted to put the
highest-Tanimoto structure first, or the fixed sum of entropy, modified cosine and embedding cosine,
whichever does better on the fold), whose best candidates are then re-ordered by **structure consensus**
(the expected Tanimoto of each to the query's unknown structure, the candidates weighted by the ranker:
a minimum-Bayes-risk choice, since the best guess is the structure central among the likely ones), and
the **reliability** scale, a
logistic model with the Tanimoto of (query, hit) structures as soft label: a 0..1 estimate of that
Tanimoto from the ranker's logit, the rank, the similarities and the query's embedding quality, so it
falls for low-quality embeddings. A second stage (:mod:`engine.queries.rerank`) re-scores each query's
best ``top`` (stored with the trees) with gradient-boosted trees that predict the candidate structure's
Tanimoto to the query's (MS2Query's approach), or with a linear re-ranker when only that is stored or the
pool is smaller than the trees' ``top``; each second stage has its own reliability scale, fitted in its
order (the trees' at engine search's pool, the linear one's at the annotate job's). A larger pool finds
better analogues (the embedding's nearest spectra are not always the structurally closest; modified cosine
and entropy re-score them): the default
2000 was chosen on the calibration fold (benchmarks/RESULTS.md, ``search-analogue-levers``). Without
calibrations for the model in use, hits are ordered by embedding cosine and the reliability is
``max(cosine, 0) * quality``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.config import Settings, setting
from engine.core.peaks import Peaks
from engine.core.records import Tolerance
from engine.models.calibration import Calibration, load_calibration
from engine.models.encoders.base import SpectrumEmbedder
from engine.queries.hits import (
    Candidates,
    SearchableLibrary,
    as_batch,
    assemble,
    query_columns,
    rank_and_score,
    search_schema,
    top_per_query,
)
from engine.queries.identity import ScoreModel
from engine.queries.references import SCORING_MAX_PEAKS, References
from engine.queries.rerank import (
    TREE_MIN_POOL,
    fits_first_stage,
    load_linear_scale,
    load_reranker,
    load_tree_reranker,
    load_tree_scale,
    rerank_order,
    tree_order,
)
from engine.queries.similarity import (
    cosine_greedy,
    entropy_similarity,
    modified_cosine,
    prepare_entropy,
    top_peaks,
)

#: Stored calibrations: a listwise ranker (trained to put the highest-Tanimoto candidate first) and the
#: reliability scale (predicted Tanimoto of a hit from the ranker logit, rank, quality and similarities).
ANALOGUE_RANKER, ANALOGUE_SCALE = "analogue_rank", "analogue_scale"
#: Candidate rows re-scored at once: a larger batch of queries is searched in parts of at most
#: ``MAX_CANDIDATE_ROWS // n_candidates`` queries (same hits; the arrays of a part peak near 0.25 GB: 2,048 queries
#: at 2000 candidates in one pass peaked at 1 GB).
MAX_CANDIDATE_ROWS = 1_000_000


@dataclass(frozen=True)
class AnalogueSettings(Settings):
    """Knobs of analogue search."""

    top_k: int = setting(10, ge=1)
    #: library spectra re-scored per query (2000: chosen on the calibration fold, see benchmarks/RESULTS.md
    #: search-analogue-levers; the annotate job asks for 10)
    n_candidates: int = setting(2000, ge=1)
    max_mass_difference: float | None = setting(None, gt=0)
    #: False: search every ion mode of the library (cross-mode analogues; hits carry their ion mode)
    same_ion_mode: bool = True
    cosine_tolerance_da: float = 0.1
    min_library_quality: float | None = None
    #: the stored second-stage re-ranker (engine.queries.rerank: trees, else linear), when there is one for the model
    rerank: bool = True



def _structure_groups(query_index: npt.NDArray[np.int64], structure: npt.NDArray[np.int64]
                      ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Group id of every (query, structure) row and the group sizes per row."""
    pair = query_index * (int(structure.max()) + 1) + structure
    _, group = np.unique(pair, return_inverse=True)
    counts = np.bincount(group).astype(np.float64)
    return group.astype(np.int64), counts[group]


def _group_mean(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return (np.bincount(group, weights=values) / np.bincount(group))[group]


def _group_max(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    top = np.full(int(group.max()) + 1, -np.inf)
    np.maximum.at(top, group, values)
    return top[group]


def analogue_features(query_peaks: Peaks, references: References, query_index: npt.NDArray[np.int64],
                      row_id: npt.NDArray[np.int64], embedding_cosine: npt.NDArray[np.float64],
                      query_quality: npt.NDArray[np.float32], settings: AnalogueSettings
                      ) -> dict[str, npt.NDArray[np.float64]]:
    """Features of (query, candidate) pairs (see module docs)."""
    unique_rows, lib_pos = np.unique(row_id, return_inverse=True)
    meta = references.meta(unique_rows)
    sqrt_q = top_peaks(query_peaks, SCORING_MAX_PEAKS, sqrt=True)
    sqrt_l = references.scoring_peaks(unique_rows)
    has_prec = np.isfinite(query_peaks.precursor_mz[query_index]) & np.isfinite(sqrt_l.precursor_mz[lib_pos])
    mod_cos = np.zeros(query_index.shape[0])
    if has_prec.any():
        mod_cos[has_prec] = modified_cosine(sqrt_q, sqrt_l, query_index[has_prec], lib_pos[has_prec],
                                            tolerance=settings.cosine_tolerance_da)[0]
    if not has_prec.all():  # no precursor: the plain cosine
        mod_cos[~has_prec] = cosine_greedy(sqrt_q, sqrt_l, query_index[~has_prec], lib_pos[~has_prec],
                                           tolerance=settings.cosine_tolerance_da)[0]
    q_ent = prepare_entropy(query_peaks, tolerance_da=references.entropy_tolerance_da)
    entropy = entropy_similarity(q_ent, references.entropy_peaks(unique_rows), query_index, lib_pos)
    keys = (meta.column("inchikey").to_pylist() if "inchikey" in meta.column_names
            else meta.column("spectrum_id").to_pylist())
    # structures by InChIKey first block; rows without one are their own structure
    key14 = np.asarray([(k or "")[:14] or f"#{i}" for i, k in enumerate(keys)], dtype=object)
    _, structure = np.unique(key14.astype(str), return_inverse=True)
    emb_cos = np.asarray(embedding_cosine, dtype=np.float64)
    group, n_struct = _structure_groups(query_index, structure.astype(np.int64)[lib_pos])
    lib_quality = (np.nan_to_num(np.asarray(meta.column("quality").to_numpy(zero_copy_only=False), np.float64),
                                 nan=1.0)
                   if "quality" in meta.column_names else np.ones(unique_rows.shape[0]))
    signed_dm = sqrt_l.precursor_mz[lib_pos] - query_peaks.precursor_mz[query_index]
    dm = np.abs(signed_dm)
    return {"embedding_cosine": emb_cos, "structure_cosine": _group_mean(group, emb_cos),
            "structure_max_cosine": _group_max(group, emb_cos),
            "structure_max_modified": _group_max(group, mod_cos),
            "structure_max_entropy": _group_max(group, entropy),
            "log_structure_spectra": np.log(n_struct), "modified_cosine": mod_cos, "entropy": entropy,
            "log_mass_difference": np.log1p(np.nan_to_num(dm, nan=1000.0)),
            "mass_difference": np.nan_to_num(signed_dm, nan=0.0),
            "quality": np.asarray(query_quality, dtype=np.float64)[query_index],
            "library_quality": lib_quality[lib_pos]}


def fallback_reliability(features: dict[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """Reliability without a calibration: ``max(cosine, 0) * quality``."""
    return np.clip(features["embedding_cosine"], 0.0, 1.0) * features["quality"]


def analogue_score_model(encoder_hash: str | None) -> ScoreModel:
    """The stored ranker and reliability scale for this encoder (None parts fall back)."""
    return ScoreModel(load_calibration(ANALOGUE_RANKER, encoder_hash), load_calibration(ANALOGUE_SCALE, encoder_hash))


def consensus_scores(query_index: npt.NDArray[np.int64], logit: npt.NDArray[np.float64],
                     fingerprints: npt.NDArray[np.uint8], *, top: int, temperature: float
                     ) -> npt.NDArray[np.float64]:
    """Expected Tanimoto of each of a query's ``top`` candidates to the query's (unknown) structure.

    The candidates' structures are weighted by ``softmax(logit / temperature)`` over the query's ``top``
    candidates; candidate ``c`` scores ``sum_j w_j Tanimoto(c, j)`` (minimum-Bayes-risk choice: the
    structure central among the likely ones). ``fingerprints`` are packed, one row per candidate row.
    Rows outside a query's ``top`` get NaN. For several temperatures use :class:`Consensus`, which
    computes the candidates' Tanimoto block once.
    """
    return Consensus(query_index, logit, fingerprints)(top, temperature)


@dataclass
class _TopBlock:
    """A query-by-query block of the ``top`` candidates: positions, validity and pairwise Tanimoto."""

    keep: npt.NDArray[np.int64]     # candidate rows inside some query's top
    slot: npt.NDArray[np.int64]     # (queries, top): position in ``keep``, -1 for none
    valid: npt.NDArray[np.bool_]
    tanimoto: npt.NDArray[np.float64]  # (queries, top, top)

    def head(self, top: int) -> _TopBlock:
        """The block of a smaller ``top``: each query's best candidates are the first slots of a larger one."""
        width = min(top, self.slot.shape[1])
        return _TopBlock(self.keep, self.slot[:, :width], self.valid[:, :width], self.tanimoto[:, :width, :width])


#: Packed structure fingerprints of candidate rows: one row per candidate, or a function of candidate positions
#: (a search's candidates number up to 2000 per query, of which only each query's best few are compared).
Fingerprints = npt.NDArray[np.uint8] | Callable[[npt.NDArray[np.int64]], npt.NDArray[np.uint8]]


class Consensus:
    """:func:`consensus_scores` of one candidate set at any ``(top, temperature)``; the pairwise Tanimoto
    of each ``top`` is computed once (the re-ranker asks for several temperatures)."""

    def __init__(self, query_index: npt.NDArray[np.int64], logit: npt.NDArray[np.float64],
                 fingerprints: Fingerprints) -> None:
        self.query_index, self.logit, self.fingerprints = query_index, logit, fingerprints
        self._blocks: dict[int, _TopBlock | None] = {}

    def __call__(self, top: int, temperature: float) -> npt.NDArray[np.float64]:
        out = np.full(self.query_index.shape[0], np.nan)
        block = self.block(top)
        if block is None:
            return out
        valid, at = block.valid, np.maximum(block.slot, 0)
        z = np.where(valid, self.logit[block.keep[at]] / temperature, -np.inf)
        w = np.exp(z - z.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        mbr = np.einsum("qkl,ql->qk", block.tanimoto, w)
        out[block.keep[block.slot[valid]]] = mbr[valid]
        return out

    def anchor(self, top: int, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Tanimoto of each of a query's ``top`` candidates (by logit) to the structure of the one among them
        with the highest ``values`` (e.g. the best by modified cosine); NaN outside the ``top``."""
        out = np.full(self.query_index.shape[0], np.nan)
        block = self.block(top)
        if block is None:
            return out
        valid, at = block.valid, np.maximum(block.slot, 0)
        best = np.argmax(np.where(valid, np.asarray(values, dtype=np.float64)[block.keep[at]], -np.inf), axis=1)
        tani = block.tanimoto[np.arange(best.shape[0]), :, best]   # (queries, top): Tanimoto to each query's best
        out[block.keep[block.slot[valid]]] = tani[valid]
        return out

    def block(self, top: int) -> _TopBlock | None:
        """The ``top`` block (computed on first use, or cut from a larger one already made: ask for the
        largest first), None without candidates."""
        if top not in self._blocks:
            larger = [t for t in self._blocks if t > top]
            if larger:
                made = self._blocks[min(larger)]
                self._blocks[top] = made.head(top) if made is not None else None
            else:
                self._blocks[top] = self._make_block(top)
        return self._blocks[top]

    def _make_block(self, top: int) -> _TopBlock | None:
        query_index = self.query_index
        keep, rank = top_per_query(query_index, self.logit, top)
        if keep.size == 0:
            return None
        group = np.cumsum(np.r_[0, query_index[keep][1:] != query_index[keep][:-1]])
        n_groups = int(group[-1]) + 1
        top = int(rank.max())  # queries may have fewer candidates than ``top``
        slot = np.full((n_groups, top), -1, dtype=np.int64)  # position in ``keep`` of each query's k-th one
        slot[group, rank - 1] = np.arange(keep.shape[0])
        valid = slot >= 0
        at = np.maximum(slot, 0)
        fps = self.fingerprints
        words = _as_words(fps(keep) if callable(fps) else fps[keep])
        counts = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
        f = words[at.T]  # (top, queries, words); invalid slots are masked below
        c = np.where(valid, counts[at], 0)
        tani = np.zeros((n_groups, top, top))
        tani[:, np.arange(top), np.arange(top)] = 1.0
        for i in range(top):  # the upper triangle, one candidate pair across all queries at a time
            for j in range(i + 1, top):
                inter = np.bitwise_count(f[i] & f[j]).sum(axis=1, dtype=np.int64)
                union = c[:, i] + c[:, j] - inter
                t = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
                tani[:, i, j] = tani[:, j, i] = t
        tani *= valid[:, :, None] & valid[:, None, :]
        return _TopBlock(keep, slot, valid, tani)


def _as_words(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """Packed fingerprint bytes viewed as 64-bit words (zero-padded to a multiple of 8 bytes)."""
    n, width = packed.shape
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return padded.view(np.uint64)


def analogue_order(query_index: npt.NDArray[np.int64], features: dict[str, npt.NDArray[np.float64]],
                   row_id: npt.NDArray[np.int64], references: References, ranker: Calibration, *,
                   consensus: Consensus | None = None) -> npt.NDArray[np.float64] | None:
    """The final ordering key with structure consensus (adds ``features["consensus"]``), or None when the
    ranker carries no consensus settings. ``consensus`` (of these rows under ``ranker.linear(features)``)
    is shared with a re-ranker that asks for other temperatures."""
    top = int(ranker.info.get("consensus_top", 0))
    temperature = float(ranker.info.get("consensus_temperature", 0.0))
    if top < 2 or temperature <= 0:
        return None
    if consensus is None:
        consensus = Consensus(query_index, ranker.linear(features),
                              lambda at: references.structure_fingerprints(row_id[at]))
    logit = consensus.logit
    cons = consensus(top, temperature)
    inside = np.isfinite(cons)
    features["consensus"] = np.where(inside, cons, 0.0)
    return np.where(inside, 1e3 + cons, logit - 1e3)


def analogue_candidates(queries: pa.RecordBatch, library: SearchableLibrary, references: References,
                        embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
                        settings: AnalogueSettings, *, peaks: Peaks | None = None) -> Candidates:
    """The ``n_candidates`` nearest library spectra of each query, with their features; ``peaks`` are the
    queries' (read from ``queries`` when not given)."""
    emb, quality = embeddings
    cols = query_columns(queries)
    window: dict[str, object] = {}
    if settings.max_mass_difference is not None:
        window = {"mass": cols["precursor_mz"], "tolerance": Tolerance(settings.max_mass_difference, "Da")}
    # decoys (target-decoy FDR of identity search) are never analogues: the search leaves them out
    hits = library.search(emb, top_k=settings.n_candidates,
                          ion_mode=cols["ion_mode"] if settings.same_ion_mode else None,
                          min_quality=settings.min_library_quality, exclude_rows=references.decoy_rows(), **window)
    qi = hits.column("query_index").to_numpy().astype(np.int64)
    rows = hits.column("row_id").to_numpy().astype(np.int64)
    cos = hits.column("score").to_numpy().astype(np.float64)
    if qi.shape[0] == 0:
        return Candidates(qi, rows, {})
    query_peaks = peaks if peaks is not None else Peaks.from_arrow(queries)
    return Candidates(qi, rows, analogue_features(query_peaks, references, qi, rows, cos, quality, settings))


def analogue_search(queries: pa.RecordBatch | pa.Table, library: SearchableLibrary, references: References,
                    embedder: SpectrumEmbedder, *, settings: AnalogueSettings | None = None,
                    score_model: ScoreModel | None = None,
                    embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
                    peaks: Peaks | None = None) -> pa.Table:
    """Top-k analogue hits of a batch of query spectra (rows of :func:`~engine.queries.hits.search_schema`);
    ``embeddings`` and ``peaks`` may be given as for :func:`~engine.queries.identity.identity_search`."""
    settings = settings or AnalogueSettings()
    schema = search_schema("analogue", "modified_cosine")
    if queries.num_rows == 0:
        return schema.empty_table()
    queries = as_batch(queries)
    peaks = peaks if peaks is not None else Peaks.from_arrow(queries)
    emb, quality = embeddings if embeddings is not None else embedder.embed_spectra(queries, peaks=peaks)
    step = max(1, MAX_CANDIDATE_ROWS // settings.n_candidates)
    if queries.num_rows > step:  # queries are independent: bounded parts give the same hits
        parts = [analogue_search(queries.slice(s, step), library, references, embedder, settings=settings,
                                 score_model=score_model, embeddings=(emb[s:s + step], quality[s:s + step]),
                                 peaks=peaks.slice(s, min(s + step, queries.num_rows)))
                 for s in range(0, queries.num_rows, step)]
        return pa.concat_tables(parts)
    scale_is_stored = score_model is None  # a caller's own score model keeps its scale
    if score_model is None:
        score_model = analogue_score_model(embedder.encoder_hash)
    cand = analogue_candidates(queries, library, references, (emb, quality), settings, peaks=peaks)
    if cand.query_index.shape[0] == 0:
        return schema.empty_table()
    qi, rows, feats = cand.query_index, cand.row_id, cand.features
    order: npt.NDArray[np.float64] | None = None
    ranker = score_model.ranker
    if ranker is not None:
        first = ranker.linear(feats)
        # the Tanimoto block of each top is made once, from the fingerprints of the rows inside it
        consensus = Consensus(qi, first, lambda at: references.structure_fingerprints(rows[at]))
        # small pools (the annotate job's) never read the trees' file (34 ms a batch)
        trees = (load_tree_reranker(embedder.encoder_hash)
                 if settings.rerank and settings.n_candidates >= TREE_MIN_POOL else None)
        # the trees read ranks and consensus among a pool as large as they were fitted on (at least ``top``)
        if trees is not None and not (settings.n_candidates >= int(trees.info["top"])
                                      and fits_first_stage(trees, ranker)):
            trees = None
        if trees is not None:  # their block is the largest: the first stage's smaller ones are cut from it
            consensus.block(int(trees.info["top"]))
        order = analogue_order(qi, feats, rows, references, ranker, consensus=consensus)
        if trees is not None:
            order, predicted = tree_order(trees, qi, feats, first, consensus)
            feats["predicted_tanimoto"] = np.nan_to_num(predicted, nan=0.0)
            tree_scale = load_tree_scale(embedder.encoder_hash, trees) if scale_is_stored else None
            if tree_scale is not None:  # hits in the trees' order, scored with their prediction
                score_model = ScoreModel(ranker, tree_scale)
        else:  # the linear re-ranker is read only when the trees do not apply
            reranker = load_reranker(embedder.encoder_hash) if settings.rerank else None
            if reranker is not None and fits_first_stage(reranker, ranker):
                order = rerank_order(feats, first, consensus, reranker)
                linear_scale = load_linear_scale(embedder.encoder_hash, reranker) if scale_is_stored else None
                if linear_scale is not None:  # hits in the linear re-ranker's order, scored by its own scale
                    score_model = ScoreModel(ranker, linear_scale)
    feats.setdefault("consensus", np.zeros(qi.shape[0]))
    keep, rank, score = rank_and_score(qi, feats, settings.top_k, ranker=score_model.ranker,
                                       scale=score_model.scale, fallback_rank="embedding_cosine",
                                       fallback_score=fallback_reliability(feats), order=order)
    cols = query_columns(queries)
    return assemble(query_id=cols["query_id"][qi[keep]], rank=rank, score=score,
                    meta=references.meta(rows[keep]), query_precursor=cols["precursor_mz"][qi[keep]],
                    quality=quality[qi[keep]], embedding_cosine=feats["embedding_cosine"][keep],
                    spectral=feats["modified_cosine"][keep], schema=schema)
