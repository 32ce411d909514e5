"""``engine molecules``: build candidate-structure databases (LanceDB table + FAISS index)."""

from __future__ import annotations

import json

import click

from engine.commands.common import engine_errors, on_invalid_option
from engine.commands.library import fixed_option, model_option


@click.group()
def molecules() -> None:
    """Candidate-structure databases embedded into the same space as spectra."""


@molecules.command("build")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="MOLDB",
              help="Molecule database directory (created, or extended when it exists).")
@model_option
@fixed_option
@on_invalid_option
@click.option("--batch-size", type=click.IntRange(1), default=4096, show_default=True,
              help="Molecules embedded and appended per batch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@engine_errors
def build(inputs: tuple[str, ...], out: str, model_path: str | None, fixed_embedder: bool, on_invalid: str,
          batch_size: int, quiet: bool) -> None:
    """Embed and index structures from SMILES lists (.smi/.txt), CSV/TSV, Parquet or SDF files.

    Tables need a SMILES column; InChIKey, formula and monoisotopic mass are computed with RDKit unless
    all are present. Molecules are keyed by InChIKey: re-adding one does not duplicate it.
    """
    from engine.jobs.artifacts import resolve_molecule_embedder
    from engine.jobs.molecules import build_molecule_db

    embedder = resolve_molecule_embedder(model_path, fixed=fixed_embedder)
    result = build_molecule_db(list(inputs), out, embedder, on_invalid=on_invalid, batch_size=batch_size,
                               progress=not quiet)
    data = result.to_dict()
    click.echo(f"molecules {out}: {data['rows']} structures ({data['inserted']} new, {data['duplicates']} "
               f"already present); read {data['molecules_read']}, skipped {data['skipped']}; "
               f"{data['seconds']:.1f} s")
    for reason, n in sorted(data["skipped_by_reason"].items()):
        click.echo(f"  skipped {reason}: {n}")


@molecules.command("info")
@click.argument("moldb", metavar="MOLDB", type=click.Path(exists=True, file_okay=False))
@engine_errors
def info(moldb: str) -> None:
    """Print rows, encoder and index partitions of MOLDB as JSON."""
    from indexes.library import Library

    click.echo(json.dumps(Library.open(moldb).info(), indent=1, default=str))
