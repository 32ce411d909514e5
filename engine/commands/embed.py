"""``engine embed spectra|molecules``: write embeddings (and spectrum quality) to Parquet."""

from __future__ import annotations

import click

from engine.commands.common import (
    dataset_option,
    device_option,
    engine_errors,
    ion_mode_option,
    on_invalid_option,
    report_option,
)

model_option = click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None,
                            help="Model checkpoint (default: the bundled model).")
threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None,
    help="Torch CPU threads (default: torch's choice). On a busy machine 1 is often fastest.")
batch_option = click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
                            help="Spectra / molecules per forward pass.")


@click.group()
def embed() -> None:
    """Embed spectra or molecules with the joint model into Parquet files."""


@embed.command("spectra")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output Parquet file.")
@model_option
@on_invalid_option
@dataset_option
@ion_mode_option
@batch_option
@threads_option
@device_option
@report_option
@engine_errors
def spectra(inputs: tuple[str, ...], out: str, model_path: str | None, on_invalid: str, dataset: str | None,
            ion_mode: str | None, batch_size: int, threads: int | None, device: str, report_path: str | None
            ) -> None:
    """Embed the spectra of INPUT... (MGF, MSP, mzML, mzXML, Parquet; files, directories or globs).

    Writes one row per valid spectrum: spectrum_id, source_file, precursor_mz, ion_mode, adduct,
    embedding and quality (0..1; below the model's threshold the embedding should not be trusted).
    """
    from engine.io.stream import ReadReport
    from engine.jobs.artifacts import open_model
    from engine.models.device import resolve_device
    from engine.models.embed import embed_spectra_files

    _set_threads(threads)
    model = open_model(model_path, device=resolve_device(device))
    report = ReadReport()
    result = embed_spectra_files(list(inputs), out, model=model, on_invalid=on_invalid,  # type: ignore[arg-type]
                                 dataset=dataset, default_ion_mode=ion_mode,  # type: ignore[arg-type]
                                 batch_size=batch_size, progress=True, report=report)
    if report_path:
        report.write_parquet(report_path)
    threshold = model.config.quality.threshold
    click.echo(report.summary())
    click.echo(f"wrote {result.rows} embeddings (dim {model.dim}) to {out} in {result.seconds:.1f} s; "
               f"quality below {threshold} flags untrustworthy spectra")


@embed.command("molecules")
@click.argument("input", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output Parquet file.")
@model_option
@on_invalid_option
@batch_option
@threads_option
@device_option
@engine_errors
def molecules(input: str, out: str, model_path: str | None, on_invalid: str, batch_size: int,
              threads: int | None, device: str) -> None:
    """Embed the molecules of INPUT: SMILES file (.smi/.txt: SMILES [id]), CSV/TSV or Parquet with a
    `smiles` column, or SDF. Writes the input's columns unchanged plus `embedding`."""
    from engine.jobs.artifacts import open_model
    from engine.models.device import resolve_device
    from engine.models.embed import embed_molecule_file

    _set_threads(threads)
    model = open_model(model_path, device=resolve_device(device))
    result = embed_molecule_file(input, out, model=model, on_invalid=on_invalid,  # type: ignore[arg-type]
                                 batch_size=batch_size)
    for item in result.report["skipped_records"][:20]:
        click.echo(f"skipped {input}, {item['record']}: invalid SMILES {item['smiles']!r}", err=True)
    click.echo(f"molecules read: {result.report['molecules_read']}, kept: {result.rows}, "
               f"skipped: {result.report['skipped']}")
    click.echo(f"wrote {result.rows} embeddings (dim {model.dim}) to {out} in {result.seconds:.1f} s")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
