"""``engine rank``: rank candidate structures for query spectra."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.commands.common import echo_skips, engine_errors, ion_mode_option, on_invalid_option, report_option


@click.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--candidates", "candidates_path", type=click.Path(exists=True), default=None, metavar="MOLECULES",
              help="Molecule table: Parquet with smiles, inchikey, formula, monoisotopic_mass, or a molecule "
                   "database directory (engine molecules build). Default: the bundled MassBank structures.")
@click.option("--by", type=click.Choice(["formula", "mass"]), default="formula", show_default=True,
              help="Select candidates by the query's FORMULA field or by neutral mass (precursor m/z and "
                   "adduct, default [M+H]+ / [M-H]-).")
@click.option("--tolerance-ppm", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Neutral-mass window for --by mass.")
@click.option("--candidate-lists", "lists_path", type=click.Path(exists=True), default=None, metavar="LISTS",
              help="Parquet with columns query_id, smiles: exactly these candidates per query.")
@click.option("--pubchem", is_flag=True,
              help="Candidates from PubChem (cached on disk); falls back to --candidates when offline.")
@click.option("--pubchem-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite cache of PubChem answers [default: ~/.cache/ms-annotation-engine/pubchem.sqlite].")
@click.option("--pubchem-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds to wait for PubChem before treating it as unreachable.")
@click.option("--library", "library_path", type=click.Path(exists=True, file_okay=False), default=None,
              metavar="LIBRARY", help="Spectral library embedded by the same model: candidates whose own reference "
              "spectra (query's ion mode) do not match the query are demoted (see engine.queries.evidence).")
@click.option("--fragments/--no-fragments", "fragment_scoring", default=True, show_default=True,
              help="Add fragment evidence to each candidate's score: how much of the query its in-silico "
                   "fragments explain and how many of its likely fragments the query shows (MetFrag-style "
                   "bond cleavage; see engine.queries.fragments).")
@click.option("--processes", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes that fragment new candidate structures (fragment evidence); more pay off "
                   "when a batch brings thousands of new candidates.")
@click.option("--top-k", type=click.IntRange(1), default=20, show_default=True, help="Candidates kept per query.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Results Parquet file.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint (default: the bundled model).")
@on_invalid_option
@ion_mode_option
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True,
              help="Query spectra per batch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@report_option
@engine_errors
def rank(queries: tuple[str, ...], candidates_path: str | None, by: str, tolerance_ppm: float,
         lists_path: str | None, pubchem: bool, pubchem_cache: Path | None, pubchem_timeout: float,
         library_path: str | None, fragment_scoring: bool, processes: int, top_k: int,
         out: Path, model_path: str | None, on_invalid: str, ion_mode: str | None, batch_size: int,
         quiet: bool, report_path: str | None) -> None:
    """Rank candidate structures for QUERIES (spectrum files, directories, globs).

    Output: query_id, rank, score (spectrum-molecule cosine, raised by the fragment score, lowered by
    --library evidence), smiles, inchikey, formula, plus probability (softmax over the query's candidates),
    n_candidates, the query's quality, the raw cosine, library_similarity (best match among the
    candidate's reference spectra), fragment_score (the term fragment evidence adds to the score) and
    explained_share (share of the query's peak weight the candidate's in-silico fragments explain).
    """
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from engine.io.inputs import expand_inputs
    from engine.io.stream import ReadReport, iter_spectrum_batches
    from engine.jobs.artifacts import open_model
    from engine.queries.candidate_sources import candidate_source
    from engine.queries.rank import RANK_SCHEMA, RankReport, rank_candidates

    if lists_path is not None and (candidates_path is not None or pubchem):
        raise click.UsageError("--candidate-lists excludes --candidates and --pubchem")
    model = open_model(model_path)
    evidence = None
    if library_path is not None:
        from engine.queries.evidence import LibraryEvidence
        from indexes.library import Library

        evidence = LibraryEvidence.from_library(Library.open(library_path), encoder_hash=model.encoder_hash,
                                                dim=model.dim)
        click.echo(f"library evidence: {len(evidence)} reference spectra of {len(evidence.groups)} "
                   f"structure x ion-mode groups from {library_path}", err=True)
    fragments = None
    if fragment_scoring:
        from engine.queries.fragments import FragmentScorer

        fragments = FragmentScorer(processes=processes)
    try:
        source = candidate_source(candidates_path=candidates_path, lists_path=lists_path, pubchem=pubchem,
                                  pubchem_cache=pubchem_cache, pubchem_timeout_s=pubchem_timeout,
                                  by=by, tolerance_ppm=tolerance_ppm)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    candidates_for = source.for_batch

    read_report = ReadReport()
    report = RankReport()
    batches = iter_spectrum_batches(expand_inputs(queries), batch_size=batch_size,
                                    on_invalid=on_invalid,  # type: ignore[arg-type]
                                    default_ion_mode=ion_mode, report=read_report)  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(str(out), RANK_SCHEMA) as writer, \
            tqdm(unit=" spectra", disable=quiet, file=sys.stderr, mininterval=0.5) as bar:
        for batch in batches:
            table = rank_candidates(batch, candidates_for(batch), model, top_k=top_k, report=report,
                                    evidence=evidence, fragments=fragments)
            writer.write_table(table)
            rows += table.num_rows
            bar.update(batch.num_rows)
    info = report.to_dict()
    click.echo(f"{read_report.kept} query spectra ({read_report.n_skipped} skipped); {info['candidates']} "
               f"candidates scored, {info['queries_without_candidates']} queries without candidates, "
               f"{info['invalid_smiles']} invalid SMILES skipped; {rows} rows written to {out}", err=True)
    echo_skips(read_report, report_path)
    if fragments is not None:
        click.echo(f"fragment evidence: {info['candidates_fragmented']} candidates scored by their in-silico "
                   f"fragments ({len(fragments)} distinct structures fragmented)", err=True)
    if evidence is not None:
        click.echo(f"{info['candidates_with_references']} candidates had reference spectra in the library, "
                   f"{info['candidates_demoted']} demoted", err=True)
