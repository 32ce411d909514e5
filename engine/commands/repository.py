"""``engine repository``: add datasets to a repository (every MS2 spectrum keyed by USI) and inspect it."""

from __future__ import annotations

import json

import click

from engine.commands.common import engine_errors, ion_mode_option, lock_wait_option, on_invalid_option


@click.group()
def repository() -> None:
    """A searchable repository: spectra of public datasets embedded, stored and indexed by USI."""


@repository.command("add")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--repo", required=True, type=click.Path(file_okay=False), metavar="REPO",
              help="Repository directory (created, or extended when it exists).")
@click.option("--dataset", required=True, metavar="MSV...",
              help="MassIVE / ProteomeXchange accession of INPUTS; spectra are keyed by USI "
                   "mzspec:MSV...:<file>:scan:<n>.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
              help="Model checkpoint to embed with [default: the bundled model].")
@click.option("--fixed-embedder", is_flag=True, help="Embed with the training-free binned-peak embedder (tests).")
@on_invalid_option
@ion_mode_option
@click.option("--batch-size", type=click.IntRange(1), default=4096, show_default=True,
              help="Spectra embedded and appended per batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lock_wait_option
@engine_errors
def add(inputs: tuple[str, ...], repo: str, dataset: str, model_path: str | None, fixed_embedder: bool,
        on_invalid: str, ion_mode: str | None, batch_size: int, as_json: bool, quiet: bool, lock_wait: float) -> None:
    """Embed and store every MS2 spectrum of INPUTS (files, directories, globs, @lists) in REPO under DATASET.

    Adding a file again (same content, same dataset) does nothing; new rows are appended to the index
    without rebuilding it, and only partitions grown stale are retrained.
    """
    from engine.jobs.artifacts import resolve_embedder
    from engine.jobs.repository import add_files

    try:
        embedder = resolve_embedder(model_path, fixed=fixed_embedder)
        result = add_files(list(inputs), repo, embedder, dataset=dataset, on_invalid=on_invalid,  # type: ignore[arg-type]
                           default_ion_mode=ion_mode, batch_size=batch_size,  # type: ignore[arg-type]
                           progress=not quiet, lock_wait=lock_wait)
    except ValueError as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(str(exc)) from None
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    click.echo(f"repository {repo}: {data['rows']} spectra; dataset {dataset}: {data['inserted']} new, "
               f"{data['duplicates']} already present; {data['files']} files ({data['files_unchanged']} unchanged), "
               f"skipped {data['skipped']} records; {data['seconds']:.1f} s")
    for reason, n in sorted(data["skipped_by_reason"].items()):
        click.echo(f"  skipped {reason}: {n}")
    if data["retrained_partitions"]:
        click.echo(f"  retrained partitions: {', '.join(data['retrained_partitions'])}")


@repository.command("info")
@click.argument("repo", metavar="REPO", type=click.Path(exists=True, file_okay=False))
@engine_errors
def info(repo: str) -> None:
    """Print datasets (files, spectra), files, spectra and index partitions of REPO as JSON."""
    from engine.jobs.repository import repository_info

    click.echo(json.dumps(repository_info(repo), indent=1, default=str))
