"""``engine index``: inspect, update and retrain the FAISS index of a library or molecule database."""

from __future__ import annotations

import json

import click

from engine.commands.common import engine_errors

library_argument = click.argument("library_path", metavar="LIBRARY",
                                  type=click.Path(exists=True, file_okay=False))


@click.group()
def index() -> None:
    """The partitioned FAISS index inside a library (LIBRARY/index) or molecule database."""


@index.command("info")
@library_argument
@engine_errors
def info(library_path: str) -> None:
    """Print the index partitions (kind, rows, nlist, stale reason) as JSON."""
    from indexes.library import Library

    click.echo(json.dumps(Library.open(library_path).info(), indent=1, default=str))


@index.command("update")
@library_argument
@click.option("--quiet", is_flag=True, help="No progress bar.")
@engine_errors
def update(library_path: str, quiet: bool) -> None:
    """Add table rows the index does not cover yet (no retraining); builds the index when there is none."""
    from indexes.library import Library

    lib = Library.open(library_path)
    manifest = lib.update_index(progress=not quiet)
    click.echo(f"{library_path}: {manifest.n_rows} rows indexed in {len(manifest.partitions)} partitions")
    for name, why in sorted(manifest.stale().items()):
        click.echo(f"  partition {name} is stale ({why})")


@index.command("retrain")
@library_argument
@click.option("--partition", "partitions", multiple=True, metavar="NAME",
              help="Retrain this partition (repeatable); default: the stale ones.")
@click.option("--all", "all_partitions", is_flag=True, help="Rebuild the whole index from the table.")
@click.option("--n-probe", type=click.IntRange(1), default=None,
              help="Store a new default n_probe in the manifest.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@engine_errors
def retrain(library_path: str, partitions: tuple[str, ...], all_partitions: bool, n_probe: int | None,
            quiet: bool) -> None:
    """Retrain stale IVF partitions: re-sort by mass, re-cluster, pick the kind the size rule gives.

    A partition is stale when it grew past the exact-search threshold, to several times its training
    size, or when many rows were appended unsorted since the last build.
    """
    from dataclasses import replace

    from indexes.library import Library

    lib = Library.open(library_path)
    policy = replace(lib.manifest().policy, n_probe=n_probe) if n_probe is not None else None
    if all_partitions:
        lib.build_index(policy=policy or lib.manifest().policy, progress=not quiet)
        click.echo(f"{library_path}: index rebuilt")
        return
    lib.update_index(progress=not quiet)
    done = lib.retrain(list(partitions) or None, policy=policy, progress=not quiet)
    click.echo(f"{library_path}: retrained {len(done)} partitions" + (f" ({', '.join(done)})" if done else ""))
