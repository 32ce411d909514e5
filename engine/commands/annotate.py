"""``engine annotate``: the repository-scale annotation job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.commands.common import (
    config_option,
    dataset_option,
    device_option,
    engine_errors,
    ion_mode_option,
    lock_wait_option,
    resolve_settings,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: partitioned Parquet results, summary.json, skipped.parquet. "
                   "Rerunning with the same --out resumes.")
@click.option("--library", default=None, type=click.Path(exists=True, file_okay=False),
              help="Spectral library (engine library build) [default: the bundled MassBank library].")
@click.option("--model", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Model checkpoint [default: the bundled model].")
@click.option("--candidates", default=None, type=click.Path(exists=True),
              help="Molecule table (Parquet / LanceDB) to rank candidate structures from.")
@click.option("--candidates-by", type=click.Choice(["mass", "formula"]), default="mass", show_default=True,
              help="Select candidates by neutral mass (precursor m/z and adduct) or by the query's FORMULA field.")
@click.option("--candidate-tolerance-ppm", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Neutral-mass window of candidate selection by mass, in ppm.")
@click.option("--pubchem", is_flag=True,
              help="Candidates from PubChem (cached on disk); falls back to --candidates when PubChem cannot be "
                   "reached.")
@click.option("--pubchem-cache", type=click.Path(dir_okay=False), default=None,
              help="SQLite cache of PubChem answers [default: ~/.cache/ms-annotation-engine/pubchem.sqlite].")
@click.option("--pubchem-timeout", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
              help="Seconds to wait for PubChem before treating it as unreachable.")
@click.option("--library-evidence/--no-library-evidence", default=True, show_default=True,
              help="Candidate ranking demotes candidates whose own reference spectra in the library do not "
                   "match the spectrum.")
@click.option("--fragments/--no-fragments", "fragment_scoring", default=True, show_default=True,
              help="Candidate ranking adds fragment evidence to each candidate's score: how much of the "
                   "spectrum its in-silico fragments explain and how many of its likely fragments it shows.")
@click.option("--candidate-ensemble", is_flag=True,
              help="Candidate ranking averages the model's spectrum-molecule cosine with the bundled ensemble "
                   "members' (as engine rank --ensemble): better rankings in about 3x the time of candidate "
                   "ranking.")
@click.option("--precursor-tolerance-ppm", default=10.0, show_default=True, type=float,
              help="Precursor m/z window of library matching, in ppm.")
@click.option("--max-mass-difference", default=None, type=float, help="Analogue search: max |delta m/z| in Da.")
@click.option("--analogue-candidates", default=10, show_default=True,
              help="Embedding neighbours re-scored per spectrum in analogue search (engine search uses 2000; "
                   "fewer is faster at repository scale). Clean val mean top-1 Tanimoto / analogue queries/s on "
                   "2 cores: 10 -> 0.424 / 3,291; 60 (the tree re-ranker applies) -> 0.471 / 1,126; 200 -> "
                   "0.483 / 804; 1000 -> 0.493 / 340; 2000 -> 0.494 / 198 (benchmarks/search/analogue_pool.py). "
                   "The analogue trust estimate in the summary is measured at the default only.")
@click.option("--cross-mode", is_flag=True,
              help="Analogue search also searches the library spectra of the other ion mode (the result gives "
                   "the hit's ion mode in analogue_ion_mode); library matches stay within the spectrum's mode.")
@click.option("--analogue-min-reliability", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="The summary counts analogue hits with at least this reliability and gives the share of them "
                   "estimated to be below Tanimoto 0.4 (calibration fold of train).")
@click.option("--chunk-size", default=4096, show_default=True, help="Spectra per unit of work and of resumption.")
@click.option("--on-invalid", type=click.Choice(["error", "skip"]), default="skip", show_default=True,
              help="skip: bad records are counted and listed in skipped.parquet; error: a bad record fails "
                   "its file (recorded in the summary; the other files go on).")
@dataset_option
@ion_mode_option
@click.option("--workers", default=0, show_default=True,
              help="Run on Ray Data with N embedding and N search actors (0: in this process).")
@click.option("--ray-address", default=None, help="Ray cluster address (e.g. ray://head:10001); implies Ray.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="Torch threads for embedding in this process (0: torch's default, all cores; 1 is much "
                   "faster on a machine other jobs keep busy).")
@click.option("--read-ahead/--no-read-ahead", default=True, show_default=True,
              help="Parse the next chunk of input in a child process while this one is annotated (local runner).")
@click.option("--repository", default=None, type=click.Path(file_okay=False), metavar="REPO",
              help="Also store every annotated spectrum and its embedding in this repository (engine repository), "
                   "keyed by USI; needs --dataset.")
@device_option
@lock_wait_option
@click.option("--dry-run", is_flag=True, help="List the files and what would be done, then stop.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@config_option
@engine_errors
def annotate(inputs: tuple[str, ...], out: Path, dry_run: bool, config_path: str | None, **_: Any) -> None:
    """Annotate every MS2 spectrum of INPUTS (mzML, mzXML, MGF, MSP files, plain or .gz; directories, globs, @lists):
    library match, analogue and (with --candidates) candidate ranking."""
    from engine.jobs.annotate import annotate_job
    from engine.jobs.annotate import dry_run as plan
    from engine.jobs.settings import AnnotateJobSettings

    settings = resolve_settings(AnnotateJobSettings, config_path)
    if dry_run:
        rows = plan(inputs, out)
        for r in rows:
            click.echo(f"{r['action']:9s} {r['file']} ({r['size_mb']} MB, {r['chunks_written']} chunks written)")
        todo = sum(r["action"] != "done" for r in rows)
        click.echo(f"{len(rows)} files, {todo} to annotate; results -> {out}/results, summary -> {out}/summary.json")
        return
    summary = annotate_job(inputs, out, settings)
    if summary.invalidated:
        click.echo(f"note: earlier results in {out} were made with another {summary.invalidated}; "
                   f"they were removed and recomputed", err=True)
    click.echo(summary.text())
    click.echo(f"results: {out}/results (Parquet, one row per spectrum); summary: {out}/summary.json")
    if summary.to_dict()["skipped"]:
        click.echo(f"skipped records: {out}/skipped.parquet")
    if why := summary.nothing_annotated():
        raise click.ClickException(why)
