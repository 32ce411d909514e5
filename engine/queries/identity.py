"""Identity search: which library spectrum is the query's compound?

For each query, all library spectra of the same ion mode inside the precursor window (``tolerance_ppm``)
are taken with their exact embedding cosine (:mod:`engine.queries.windows`; the ``max_candidates``
nearest by cosine where a window holds more), re-scored with exact spectral similarity
(entropy similarity at 0.02 Da and greedy cosine at 0.1 Da on square-root intensities, both
vectorised over all pairs of a batch), and the features are combined by logistic models fitted on the
calibration fold of ``train`` (structures the model never saw): a ranker over all window candidates,
and a scale from its logit and the rank to the probability that the hit has the query's structure.
Without calibrations for the model in use, the spectral-only pair is used (and without that, the
entropy similarity orders and scores the hits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.core.config import Settings, setting
from engine.core.peaks import Peaks
from engine.core.records import Tolerance
from engine.models.calibration import Calibration, load_calibration
from engine.models.encoders.base import SpectrumEmbedder
from engine.queries.fdr import competition
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
from engine.queries.references import SCORING_MAX_PEAKS, References
from engine.queries.similarity import cosine_greedy, entropy_similarity, prepare_entropy, top_peaks
from engine.queries.windows import as_vector_index, window_pairs

#: Stored calibrations (engine/data/calibration): a ranker over all window candidates and a scale that
#: turns the ranker's logit and the rank into the probability of the right structure; the spectral pair
#: (no embedding features) is the model-free fallback.
IDENTITY_RANKER, IDENTITY_SCALE = "identity_rank", "identity_scale"
SPECTRAL_RANKER, SPECTRAL_SCALE = "identity_spectral_rank", "identity_spectral_scale"


@dataclass(frozen=True)
class IdentitySettings(Settings):
    """Knobs of identity search."""

    top_k: int = setting(10, ge=1)
    precursor_tolerance_ppm: float = setting(10.0, gt=0)
    max_candidates: int = setting(256, ge=1)
    entropy_tolerance_da: float = 0.02
    cosine_tolerance_da: float = 0.1
    min_library_quality: float | None = None


def identity_features(query_peaks: Peaks, references: References, query_index: npt.NDArray[np.int64],
                      row_id: npt.NDArray[np.int64], embedding_cosine: npt.NDArray[np.float64],
                      settings: IdentitySettings, *, needed: frozenset[str] | None = None
                      ) -> dict[str, npt.NDArray[np.float64]]:
    """Features of (query, library row) pairs: embedding cosine, entropy similarity, cosine, matched peaks,
    precursor error, and each similarity's gap to the best candidate of the same query (0 for the best).

    The greedy cosine (``cosine``, ``log_matches``) is computed only when ``needed`` asks for it (None:
    every feature)."""
    unique_rows, lib_pos = np.unique(row_id, return_inverse=True)
    q_ent = prepare_entropy(query_peaks, tolerance_da=settings.entropy_tolerance_da)
    l_ent = references.entropy_peaks(unique_rows)
    if l_ent.tolerance_da != settings.entropy_tolerance_da:
        l_ent = prepare_entropy(references.peaks(unique_rows), tolerance_da=settings.entropy_tolerance_da)
    entropy = entropy_similarity(q_ent, l_ent, query_index, lib_pos)
    q_prec = query_peaks.precursor_mz[query_index]
    lib_prec = references.precursor_mz(unique_rows)[lib_pos]
    ppm = np.abs(lib_prec - q_prec) / q_prec * 1e6
    extra: dict[str, npt.NDArray[np.float64]] = {}
    if needed is None or {"cosine", "log_matches"} & needed:
        sqrt_q = top_peaks(query_peaks, SCORING_MAX_PEAKS, sqrt=True)
        sqrt_l = references.scoring_peaks(unique_rows)
        cosine, matches = cosine_greedy(sqrt_q, sqrt_l, query_index, lib_pos,
                                        tolerance=settings.cosine_tolerance_da)
        extra = {"cosine": cosine, "log_matches": np.log1p(matches.astype(np.float64))}
    emb_cos = np.asarray(embedding_cosine, dtype=np.float64)
    return {"embedding_cosine": emb_cos, "entropy": entropy, **extra,
            "precursor_error": ppm / settings.precursor_tolerance_ppm,
            "entropy_gap": entropy - _group_max(query_index, entropy),
            "embedding_gap": emb_cos - _group_max(query_index, emb_cos)}


def _group_max(group: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per row: the maximum of ``values`` over the rows of its group (query)."""
    if group.shape[0] == 0:
        return values
    top = np.full(int(group.max()) + 1, -np.inf)
    np.maximum.at(top, group, values)
    return top[group]


@dataclass(frozen=True)
class ScoreModel:
    """How candidates are ordered (``ranker``) and scored (``scale``); None parts use the fallbacks."""

    ranker: Calibration | None = None
    scale: Calibration | None = None

    def features(self) -> frozenset[str]:
        """The input features the ranker and scale read."""
        names = {"entropy", "embedding_cosine"}
        for part in (self.ranker, self.scale):
            if part is not None:
                names |= set(part.features)
        return frozenset(names)


def identity_score_model(encoder_hash: str | None) -> ScoreModel:
    """The stored model for this encoder, else the spectral-only one, else none (entropy similarity)."""
    ranker, scale = load_calibration(IDENTITY_RANKER, encoder_hash), load_calibration(IDENTITY_SCALE, encoder_hash)
    if ranker is not None and scale is not None:
        return ScoreModel(ranker, scale)
    return ScoreModel(load_calibration(SPECTRAL_RANKER, None), load_calibration(SPECTRAL_SCALE, None))


Pairs = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _window(queries: pa.RecordBatch, library: SearchableLibrary, emb: npt.NDArray[np.float32],
            settings: IdentitySettings) -> Pairs:
    cols = query_columns(queries)
    return window_pairs(as_vector_index(library), emb, cols["precursor_mz"], cols["ion_mode"],
                        Tolerance(settings.precursor_tolerance_ppm, "ppm"), min_quality=settings.min_library_quality)


def _featurised(pairs: Pairs, query_peaks: Peaks, references: References, settings: IdentitySettings,
                needed: frozenset[str] | None, *, decoys: bool) -> Candidates:
    """The targets (or the decoys) among window pairs, capped at ``max_candidates`` per query, with features
    computed among them alone: decoys compete as a separate library would."""
    qi, rows, cos = pairs
    if qi.shape[0] and references.has_decoys:
        mine = references.is_decoy(rows) == decoys
        qi, rows, cos = qi[mine], rows[mine], cos[mine]
    elif decoys:
        qi, rows, cos = qi[:0], rows[:0], cos[:0]
    if qi.shape[0] == 0:
        return Candidates(qi, rows, {})
    if np.bincount(qi).max() > settings.max_candidates:
        keep, _ = top_per_query(qi, cos, settings.max_candidates)
        keep = np.sort(keep)
        qi, rows, cos = qi[keep], rows[keep], cos[keep]
    return Candidates(qi, rows, identity_features(query_peaks, references, qi, rows, cos, settings, needed=needed))


def identity_candidates(queries: pa.RecordBatch, library: SearchableLibrary, references: References,
                        embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
                        settings: IdentitySettings, *, needed: frozenset[str] | None = None,
                        peaks: Peaks | None = None, decoys: bool = False) -> Candidates:
    """Every library spectrum (every decoy with ``decoys``) in each query's window (the ``max_candidates``
    nearest by embedding cosine where a window holds more), with its features; ``peaks`` are the queries'
    (read from ``queries`` when not given)."""
    query_peaks = peaks if peaks is not None else Peaks.from_arrow(queries)
    return _featurised(_window(queries, library, embeddings[0], settings), query_peaks, references, settings,
                       needed, decoys=decoys)


def identity_search(queries: pa.RecordBatch | pa.Table, library: SearchableLibrary, references: References,
                    embedder: SpectrumEmbedder, *, settings: IdentitySettings | None = None,
                    score_model: ScoreModel | None = None,
                    embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
                    peaks: Peaks | None = None) -> pa.Table:
    """Top-k identity hits of a batch of query spectra (rows of :func:`~engine.queries.hits.search_schema`).

    ``embeddings`` (embedding, quality) may be given when the queries were embedded already, and
    ``peaks`` when their peaks were unpacked already (:meth:`Peaks.from_arrow` of ``queries``);
    ``score_model`` defaults to :func:`identity_score_model` for the embedder. Decoys are never returned;
    :func:`identity_search_tdc` also gives the target-decoy competition the q-values come from.
    """
    return identity_search_tdc(queries, library, references, embedder, settings=settings, score_model=score_model,
                               embeddings=embeddings, peaks=peaks)[0]


def identity_search_tdc(queries: pa.RecordBatch | pa.Table, library: SearchableLibrary, references: References,
                        embedder: SpectrumEmbedder, *, settings: IdentitySettings | None = None,
                        score_model: ScoreModel | None = None,
                        embeddings: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None,
                        peaks: Peaks | None = None) -> tuple[pa.Table, pa.Table | None]:
    """:func:`identity_search` plus, for a library with decoys, each query's best target and best decoy
    score (:data:`engine.queries.fdr.COMPETITION_SCHEMA`; None without decoys). The decoys are scored
    among the decoys of the window exactly as the targets among the targets; q-values need the
    competition of the whole run (:func:`engine.queries.fdr.with_q_values`)."""
    settings = settings or IdentitySettings()
    if score_model is None:
        score_model = identity_score_model(embedder.encoder_hash)
    schema = search_schema("identity", "entropy")
    n = queries.num_rows
    cols = query_columns(queries)
    target_best = np.full(n, np.nan)
    decoy_best = np.full(n, np.nan)

    def contest() -> pa.Table | None:
        return competition(cols["query_id"], target_best, decoy_best) if references.has_decoys else None

    if n == 0:
        return schema.empty_table(), contest()
    queries = as_batch(queries)
    peaks = peaks if peaks is not None else Peaks.from_arrow(queries)
    emb, quality = embeddings if embeddings is not None else embedder.embed_spectra(queries, peaks=peaks)
    pairs = _window(queries, library, emb, settings)
    needed = score_model.features()
    if references.has_decoys:
        dec = _featurised(pairs, peaks, references, settings, needed, decoys=True)
        if dec.query_index.shape[0]:
            keep, _, score = rank_and_score(dec.query_index, dec.features, 1, ranker=score_model.ranker,
                                            scale=score_model.scale, fallback_rank="entropy",
                                            fallback_score=dec.features["entropy"])
            decoy_best[dec.query_index[keep]] = score
    cand = _featurised(pairs, peaks, references, settings, needed, decoys=False)
    if cand.query_index.shape[0] == 0:
        return schema.empty_table(), contest()
    qi, rows, feats = cand.query_index, cand.row_id, cand.features
    keep, rank, score = rank_and_score(qi, feats, settings.top_k, ranker=score_model.ranker,
                                       scale=score_model.scale, fallback_rank="entropy",
                                       fallback_score=feats["entropy"])
    top = rank == 1
    target_best[qi[keep][top]] = score[top]
    return assemble(query_id=cols["query_id"][qi[keep]], rank=rank, score=score,
                    meta=references.meta(rows[keep]), query_precursor=cols["precursor_mz"][qi[keep]],
                    quality=quality[qi[keep]], embedding_cosine=feats["embedding_cosine"][keep],
                    spectral=feats["entropy"][keep], schema=schema), contest()
