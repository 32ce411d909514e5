"""``engine library``: build and inspect reference spectrum libraries (LanceDB table + FAISS index)."""

from __future__ import annotations

import json
from typing import Any

import click

from engine.commands.common import device_option, engine_errors, ion_mode_option, lock_wait_option, on_invalid_option

model_option = click.option(
    "--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CKPT",
    help="Model checkpoint to embed with (default: the bundled default model).")
fixed_option = click.option(
    "--fixed-embedder", is_flag=True,
    help="Embed with the deterministic training-free binned-peak embedder (tests, baselines).")


def resolve_embedder(model_path: str | None, fixed: bool, device: str = "cpu") -> Any:
    """The embedder the options ask for (see :func:`engine.jobs.artifacts.resolve_embedder`) on ``device``
    (auto, cpu or cuda)."""
    from engine.jobs.artifacts import resolve_embedder as resolve
    from engine.models.device import resolve_device

    return resolve(model_path, fixed=fixed, device=resolve_device(device))


@click.group()
def library() -> None:
    """Reference spectrum libraries: annotated spectra embedded into a LanceDB table and a FAISS index."""


@library.command("build")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="LIBRARY",
              help="Library directory (created, or extended when it exists).")
@model_option
@fixed_option
@on_invalid_option
@ion_mode_option
@click.option("--batch-size", type=click.IntRange(1), default=4096, show_default=True,
              help="Spectra embedded and appended per batch.")
@click.option("--decoys/--no-decoys", default=None,
              help="Add a decoy spectrum per spectrum (conditional peak sampling) for target-decoy q-values "
                   "[default: yes for a new library, else as the library was built].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write the skipped records (file, record, reason) to this Parquet file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lock_wait_option
@device_option
@engine_errors
def build(inputs: tuple[str, ...], out: str, model_path: str | None, fixed_embedder: bool, on_invalid: str,
          ion_mode: str | None, batch_size: int, decoys: bool | None, report_path: str | None,
          quiet: bool, lock_wait: float, device: str) -> None:
    """Ingest, embed and index annotated reference spectra (MGF, MSP, mzML, mzXML, Parquet).

    INPUT may be files, directories, globs or file lists. Running it again on the same LIBRARY adds
    new files and spectra only (unchanged files and known spectrum ids are skipped).
    """
    from engine.jobs.library import build_library

    embedder = resolve_embedder(model_path, fixed_embedder, device)
    result = build_library(list(inputs), out, embedder, on_invalid=on_invalid,
                           default_ion_mode=ion_mode,
                           batch_size=batch_size, progress=not quiet, report_path=report_path, decoys=decoys,
                           lock_wait=lock_wait)
    data = result.to_dict()
    click.echo(f"library {out}: {data['rows'] - data['decoys']} spectra ({data['inserted']} new, "
               f"{data['duplicates']} already present) and {data['decoys']} decoys ({data['decoys_inserted']} new); "
               f"read {data['spectra_read']}, skipped {data['skipped']} in {data['files']} files; "
               f"{data['seconds']:.1f} s")
    for reason, n in sorted(data["skipped_by_reason"].items()):
        click.echo(f"  skipped {reason}: {n}")
    for name, why in sorted(data["stale_partitions"].items()):
        click.echo(f"  partition {name} is stale ({why}); run `engine index retrain {out}`")


@library.command("info")
@click.argument("library_path", metavar="LIBRARY", type=click.Path(exists=True, file_okay=False))
@engine_errors
def info(library_path: str) -> None:
    """Print rows, encoder and index partitions of LIBRARY as JSON."""
    from indexes.library import Library

    click.echo(json.dumps(Library.open(library_path).info(), indent=1, default=str))
