"""``engine rank``: rank candidate structures for query spectra."""

from __future__ import annotations

import sys
from typing import Any

import click

from engine.commands.common import (
    config_option,
    device_option,
    echo_skips,
    engine_errors,
    ion_mode_option,
    on_invalid_option,
    report_option,
    resolve_settings,
)


@click.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--candidates", type=click.Path(exists=True), default=None, metavar="MOLECULES",
              help="Molecule table: Parquet with smiles, inchikey, formula, monoisotopic_mass, or a molecule "
                   "database directory (engine molecules build). Default: the bundled MassBank structures.")
@click.option("--by", type=click.Choice(["formula", "mass"]), default="formula", show_default=True,
              help="Select candidates by the query's FORMULA field or by neutral mass (precursor m/z and "
                   "adduct, default [M+H]+ / [M-H]-).")
@click.option("--tolerance-ppm", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Neutral-mass window for --by mass.")
@click.option("--candidate-lists", type=click.Path(exists=True), default=None, metavar="LISTS",
              help="Parquet with columns query_id, smiles: exactly these candidates per query.")
@click.option("--pubchem", is_flag=True,
              help="Candidates from PubChem (cached on disk); falls back to --candidates when offline.")
@click.option("--pubchem-cache", type=click.Path(dir_okay=False), default=None,
              help="SQLite cache of PubChem answers [default: ~/.cache/ms-annotation-engine/pubchem.sqlite].")
@click.option("--pubchem-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds to wait for PubChem before treating it as unreachable.")
@click.option("--library", type=click.Path(exists=True, file_okay=False), default=None,
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
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Results Parquet file (required).")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint (default: the bundled model).")
@click.option("--ensemble", is_flag=True,
              help="Average the model's spectrum-molecule cosine with the bundled ensemble members' (three more "
                   "joint models, engine/data/model/members; fragment evidence at the ensemble's own weights): better "
                   "rankings (clean val mass256 + fragments hit@1 58.0% vs 53.8%) in about 3x the ranking time.")
@click.option("--ensemble-member", "ensemble_members", multiple=True, type=click.Path(exists=True, dir_okay=False),
              metavar="CKPT", help="A further ensemble member (repeatable); with or without --ensemble.")
@on_invalid_option
@ion_mode_option
@click.option("--batch-size", type=click.IntRange(1), default=1024, show_default=True,
              help="Query spectra per batch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@report_option
@device_option
@config_option
@engine_errors
def rank(queries: tuple[str, ...], config_path: str | None, **_: Any) -> None:
    """Rank candidate structures for QUERIES (spectrum files, directories, globs).

    Output: query_id, rank, score (spectrum-molecule cosine, raised by the fragment score, lowered by
    --library evidence), smiles, inchikey, formula, plus probability (softmax over the query's candidates),
    n_candidates, the query's quality, the raw cosine, library_similarity (best match among the
    candidate's reference spectra), fragment_score (the term fragment evidence adds to the score) and
    explained_share (share of the query's peak weight the candidate's in-silico fragments explain).
    """
    from pathlib import Path

    import pyarrow.parquet as pq
    from tqdm import tqdm

    from engine.io.inputs import expand_inputs
    from engine.io.stream import ReadReport, iter_spectrum_batches
    from engine.jobs.artifacts import open_library, open_members, open_model
    from engine.jobs.settings import RankSettings
    from engine.models.device import resolve_device
    from engine.queries.candidate_sources import candidate_source
    from engine.queries.rank import RANK_SCHEMA, RankReport, rank_candidates

    s = resolve_settings(RankSettings, config_path, rename={"report_path": "report"})
    assert s.out is not None
    out = Path(s.out)
    model = open_model(s.model, device=resolve_device(s.device))
    members = open_members(s.ensemble_members, bundled=s.ensemble, model=model, device=resolve_device(s.device))
    if members:
        click.echo(f"ensemble: the model and {len(members)} members "
                   f"({', '.join(m.encoder_hash[:8] for m in members)})", err=True)
    evidence = None
    if s.library is not None:
        from engine.queries.evidence import LibraryEvidence

        evidence = LibraryEvidence.from_library(open_library(s.library), encoder_hash=model.encoder_hash,
                                                dim=model.dim)
        click.echo(f"library evidence: {len(evidence)} reference spectra of {len(evidence.groups)} "
                   f"structure x ion-mode groups from {s.library}", err=True)
    fragments = None
    if s.fragment_scoring:
        from engine.queries.fragments import FragmentScorer

        fragments = FragmentScorer(processes=s.processes)
    source = candidate_source(candidates_path=s.candidates, lists_path=s.candidate_lists, pubchem=s.pubchem,
                              pubchem_cache=s.pubchem_cache, pubchem_timeout_s=s.pubchem_timeout,
                              by=s.by, tolerance_ppm=s.tolerance_ppm, on_unusable=s.on_invalid)

    read_report = ReadReport()
    report = RankReport()
    batches = iter_spectrum_batches(expand_inputs(queries), batch_size=s.batch_size, on_invalid=s.on_invalid,
                                    default_ion_mode=s.ion_mode, report=read_report)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(str(out), RANK_SCHEMA) as writer, \
            tqdm(unit=" spectra", disable=s.quiet, file=sys.stderr, mininterval=0.5) as bar:
        for batch in batches:
            table = rank_candidates(batch, source.for_batch(batch), model, top_k=s.top_k, report=report,
                                    evidence=evidence, fragments=fragments, members=members)
            writer.write_table(table)
            rows += table.num_rows
            bar.update(batch.num_rows)
    info = report.to_dict()
    click.echo(f"{read_report.kept} query spectra ({read_report.n_skipped} skipped); {info['candidates']} "
               f"candidates scored, {info['queries_without_candidates']} queries without candidates, "
               f"{info['invalid_smiles']} invalid SMILES skipped; {rows} rows written to {out}", err=True)
    echo_skips(read_report, s.report)
    for reason, n in sorted(source.skipped.items()):
        click.echo(f"  no candidates selected ({reason}): {n}", err=True)
    if fragments is not None:
        click.echo(f"fragment evidence: {info['candidates_fragmented']} candidates scored by their in-silico "
                   f"fragments ({len(fragments)} distinct structures fragmented)", err=True)
    if evidence is not None:
        click.echo(f"{info['candidates_with_references']} candidates had reference spectra in the library, "
                   f"{info['candidates_demoted']} demoted", err=True)
