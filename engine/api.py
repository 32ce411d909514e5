"""The engine's Python API, for notebooks and scripts; the command line calls the same functions.

``open_model`` / ``open_library`` open the artifacts (the bundled model and MassBank library by
default), ``embed_spectra`` embeds spectra, ``search`` matches them against a library (identity or
analogue), ``rank`` ranks candidate structures for them and ``annotate`` runs the resumable annotation job.
Spectra may be given as spectrum files (paths, directories, globs), as
:class:`~engine.core.records.Spectrum` records, as matchms spectra (read through
:mod:`engine.io.matchms_adapter`) or as record batches of :data:`engine.core.schema.SPECTRUM_SCHEMA`.
Results are Arrow tables (``.to_pandas()`` gives a DataFrame)::

    import engine
    library = engine.open_library()                      # bundled library + the model it was built with
    hits = engine.search("queries.mgf", library, mode="analogue", top_k=5)
    emb = engine.embed_spectra("queries.mgf", library.model)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from engine.core.errors import FileFormatError
from engine.core.records import IonMode, Spectrum
from engine.core.schema import spectra_to_batch
from engine.io.inputs import expand_inputs
from engine.io.matchms_adapter import from_matchms_many
from engine.io.stream import OnInvalid, ReadReport, batched, iter_spectrum_batches, keep_valid
from engine.jobs.annotate import JobSummary, annotate_job
from engine.jobs.artifacts import open_library as _open_library
from engine.jobs.artifacts import open_library_and_model, open_members, open_model
from engine.jobs.settings import AnnotateJobSettings
from engine.models.embed import embedded_batches
from engine.models.model import JointModel
from engine.queries.analogue import AnalogueSettings, analogue_search
from engine.queries.candidate_sources import candidate_source
from engine.queries.evidence import LibraryEvidence
from engine.queries.fdr import with_q_values
from engine.queries.fragments import FragmentScorer
from engine.queries.hits import search_schema
from engine.queries.identity import IdentitySettings, identity_search_tdc
from engine.queries.rank import RANK_SCHEMA, RankReport, rank_candidates
from engine.queries.references import References
from indexes.library import Library

#: What the functions take as spectra: file paths (directories, globs, ``@list.txt``), Spectrum records,
#: matchms spectra, or record batches / a table of the spectrum schema.
Spectra = str | Path | Sequence[str | Path] | Sequence[Spectrum] | pa.RecordBatch | pa.Table | \
    Iterable[pa.RecordBatch]

__all__ = ["Spectra", "SpectralLibrary", "annotate", "embed_spectra", "open_library", "open_model", "rank", "search",
           "search_tables", "spectrum_batches"]


@dataclass
class SpectralLibrary:
    """An opened spectral library with the model its spectra were embedded with and its reference peaks."""

    library: Library
    model: Any
    references: References

    @property
    def has_decoys(self) -> bool:
        """Whether the library holds decoy spectra (identity hits then get target-decoy q-values)."""
        return bool(self.references.has_decoys)


def open_library(path: str | Path | None = None, *, model: JointModel | str | Path | None = None,
                 fixed: bool = False, need_molecules: bool = False, device: str = "cpu") -> SpectralLibrary:
    """The spectral library at ``path`` (``None``: the bundled MassBank library) with its model: ``model``
    opened already, a checkpoint path, or ``None`` for the bundled model (the fixed embedder for a library
    built with it, unless ``need_molecules``: structure search embeds molecules). A model of another encoder
    than the library's is refused."""
    if model is None or isinstance(model, (str, Path)):
        lib, opened = open_library_and_model(path, model, fixed=fixed, need_molecules=need_molecules, device=device)
    else:
        lib, opened = _open_library(path), model
        lib.table.check_encoder(dim=opened.dim, encoder_hash=opened.encoder_hash)
    return SpectralLibrary(lib, opened, References(lib))


def spectrum_batches(spectra: Spectra, *, on_invalid: OnInvalid = "error", ion_mode: IonMode | None = None,
                     batch_size: int = 4096, report: ReadReport | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of the valid spectra of ``spectra`` (see :data:`Spectra`). Spectrum records are
    validated as read ones are; ``on_invalid="skip"`` leaves bad ones out and counts them in ``report``."""
    report = report if report is not None else ReadReport()
    if isinstance(spectra, pa.RecordBatch):
        yield spectra
        return
    if isinstance(spectra, pa.Table):
        yield from spectra.to_batches(max_chunksize=batch_size)
        return
    items: list[Any] = [spectra] if isinstance(spectra, (str, Path)) else list(spectra)
    if items and all(isinstance(s, pa.RecordBatch) for s in items):
        yield from items
    elif items and all(isinstance(s, Spectrum) for s in items):
        yield from _record_batches(items, on_invalid, ion_mode, batch_size, report)
    elif items and all(hasattr(s, "peaks") and hasattr(s, "metadata") for s in items):   # matchms spectra
        yield from _record_batches(from_matchms_many(items), on_invalid, ion_mode, batch_size, report)
    else:
        paths = expand_inputs([str(p) for p in items])
        if not paths:
            raise FileFormatError("no spectrum files found", path=", ".join(map(str, items)), reason="file_error")
        yield from iter_spectrum_batches(paths, batch_size=batch_size, on_invalid=on_invalid,
                                         default_ion_mode=ion_mode, report=report)


def _record_batches(spectra: list[Spectrum], on_invalid: OnInvalid, ion_mode: IonMode | None, batch_size: int,
                    report: ReadReport) -> Iterator[pa.RecordBatch]:
    for chunk in batched(spectra, batch_size):
        report.spectra_read += len(chunk)
        good = [s for _, s in keep_valid(chunk, path="<spectra>", records=[s.spectrum_id or f"index={i}"
                                                                           for i, s in enumerate(chunk)],
                                         on_invalid=on_invalid, default_ion_mode=ion_mode, report=report)]
        if good:
            yield spectra_to_batch(good)


def _model(model: JointModel | str | Path | None) -> JointModel:
    return model if isinstance(model, JointModel) else open_model(model)


def embed_spectra(spectra: Spectra, model: JointModel | str | Path | None = None, *,
                  on_invalid: OnInvalid = "error", ion_mode: IonMode | None = None, batch_size: int = 1024,
                  report: ReadReport | None = None) -> pa.Table:
    """Embed ``spectra`` with ``model`` (default: the bundled model): one row per valid spectrum with
    ``spectrum_id``, ``source_file``, ``record_index``, ``precursor_mz``, ``charge``, ``ion_mode``, ``adduct``,
    ``embedding`` (unit vectors) and ``quality`` (0..1; low: the embedding is not to be trusted)."""
    from engine.models.embed import spectrum_embedding_schema

    opened = _model(model)
    batches = spectrum_batches(spectra, on_invalid=on_invalid, ion_mode=ion_mode,
                               batch_size=max(batch_size, 4096), report=report)
    return pa.Table.from_batches(list(embedded_batches(batches, opened, batch_size=batch_size)),
                                 schema=spectrum_embedding_schema(opened))


def search_tables(spectra: Spectra, library: SpectralLibrary, *, mode: Literal["identity", "analogue"] = "identity",
                  top_k: int = 10, precursor_tolerance_ppm: float = 10.0, max_mass_difference: float | None = None,
                  analogue_candidates: int = AnalogueSettings().n_candidates,
                  min_library_quality: float | None = None, cross_mode: bool = False, fdr: float | None = None,
                  on_invalid: OnInvalid = "error", ion_mode: IonMode | None = None, batch_size: int = 2048,
                  report: ReadReport | None = None, progress: Any = None) -> Iterator[pa.Table]:
    """:func:`search`, streamed: result tables as the query batches are searched (identity search of a
    library with decoys holds them to the end: q-values need the competition of every query). ``progress``
    (e.g. a tqdm bar) is updated with the number of spectra searched."""
    if fdr is not None and mode != "identity":
        raise ValueError("fdr applies to identity search (q-values come from identity matches)")
    if fdr is not None and not library.has_decoys:
        raise ValueError(f"fdr needs decoy spectra: {library.references.decoy_note}")
    id_settings = IdentitySettings(top_k=top_k, precursor_tolerance_ppm=precursor_tolerance_ppm,
                                   min_library_quality=min_library_quality)
    an_settings = AnalogueSettings(top_k=top_k, max_mass_difference=max_mass_difference,
                                   n_candidates=analogue_candidates,
                                   min_library_quality=min_library_quality, same_ion_mode=not cross_mode)
    lib, refs, model = library.library, library.references, library.model

    def searched() -> Iterator[tuple[pa.Table, pa.Table | None]]:
        for batch in spectrum_batches(spectra, on_invalid=on_invalid, ion_mode=ion_mode, batch_size=batch_size,
                                      report=report):
            if mode == "identity":
                yield identity_search_tdc(batch, lib, refs, model, settings=id_settings)
            else:
                yield analogue_search(batch, lib, refs, model, settings=an_settings), None
            if progress is not None:
                progress.update(batch.num_rows)

    if mode != "identity" or not library.has_decoys:
        yield from (table for table, _ in searched())
        return
    parts = list(searched())
    tables = [t for t, _ in parts]
    hits = pa.concat_tables(tables) if tables else search_schema("identity").empty_table()
    contests = [c for _, c in parts if c is not None]
    if contests:
        hits = with_q_values(hits, pa.concat_tables(contests))
    if fdr is not None:
        hits = hits.filter(pc.less_equal(hits.column("q_value"), pa.scalar(fdr, pa.float32())))
    yield hits


def search(spectra: Spectra, library: SpectralLibrary | str | Path | None = None, *,
           mode: Literal["identity", "analogue"] = "identity", top_k: int = 10, **options: Any) -> pa.Table:
    """Search ``spectra`` against ``library`` (an opened :class:`SpectralLibrary`, a path, or ``None`` for
    the bundled library). ``identity``: the same compound within ``precursor_tolerance_ppm`` (calibrated
    probability, exact spectral similarity, target-decoy ``q_value`` with a decoy library, ``fdr`` to
    filter on it); ``analogue``: similar compounds at any precursor mass (``max_mass_difference`` in Da,
    ``cross_mode`` for the other ion mode too, ``analogue_candidates`` embedding neighbours re-scored per
    query). One row per hit, ``top_k`` per query; the other keywords
    are those of :func:`search_tables`."""
    opened = library if isinstance(library, SpectralLibrary) else open_library(library)
    tables = list(search_tables(spectra, opened, mode=mode, top_k=top_k, **options))
    return pa.concat_tables(tables) if tables else search_schema(mode).empty_table()


def rank(spectra: Spectra, model: JointModel | str | Path | None = None, *, candidates: str | Path | None = None,
         candidate_lists: str | Path | None = None, pubchem: bool = False, by: Literal["formula", "mass"] = "mass",
         tolerance_ppm: float = 10.0, library: SpectralLibrary | str | Path | None = None, fragments: bool = True,
         top_k: int = 20, on_invalid: OnInvalid = "error", ion_mode: IonMode | None = None,
         batch_size: int = 1024, report: RankReport | None = None, ensemble: bool = False,
         ensemble_members: Sequence[str | Path] = ()) -> pa.Table:
    """Rank candidate structures for each spectrum: from the molecule table ``candidates`` (default: the
    bundled candidate set), per-query ``candidate_lists``, or PubChem, selected by neutral ``mass`` or by the
    spectrum's ``formula``. ``library`` adds library evidence (candidates whose own reference spectra do not
    match are demoted); ``fragments`` adds in-silico fragment evidence. ``top_k`` rows per query.
    ``ensemble`` averages the cosine with the bundled ensemble members', ``ensemble_members`` with more."""
    opened = _model(model)
    members = open_members([str(m) for m in ensemble_members], bundled=ensemble, model=opened)
    evidence = None
    if library is not None:
        lib = library.library if isinstance(library, SpectralLibrary) else _open_library(library)
        evidence = LibraryEvidence.from_library(lib, encoder_hash=opened.encoder_hash, dim=opened.dim)
    source = candidate_source(candidates_path=None if candidates is None else str(candidates),
                              lists_path=None if candidate_lists is None else str(candidate_lists), pubchem=pubchem,
                              by=by, tolerance_ppm=tolerance_ppm, on_unusable=on_invalid)
    scorer = FragmentScorer() if fragments else None
    tables = [rank_candidates(batch, source.for_batch(batch), opened, top_k=top_k, report=report,
                              evidence=evidence, fragments=scorer, members=members)
              for batch in spectrum_batches(spectra, on_invalid=on_invalid, ion_mode=ion_mode,
                                            batch_size=batch_size)]
    return pa.concat_tables(tables) if tables else RANK_SCHEMA.empty_table()


def annotate(inputs: str | Path | Sequence[str | Path], out: str | Path, **settings: Any) -> JobSummary:
    """Run the resumable annotation job (what ``engine annotate`` does) on spectrum files ``inputs``, writing
    to the directory ``out``; ``settings`` are the fields of :class:`engine.jobs.settings.AnnotateJobSettings`
    (``library``, ``model``, ``candidates``, ``precursor_tolerance_ppm``, ``workers``, ...). Returns the
    job's summary; read the results with ``pyarrow.dataset.dataset(out + "/results", partitioning="hive")``."""
    files = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    return annotate_job(files, out, AnnotateJobSettings(**{"quiet": True, **settings}))
