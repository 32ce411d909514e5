"""``engine ingest``: stream spectrum files into a LanceDB store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.commands.common import (
    dataset_option,
    engine_errors,
    ion_mode_option,
    lock_wait_option,
    on_invalid_option,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "store", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="LanceDB database directory; spectra go to its table 'spectra'.")
@on_invalid_option
@dataset_option
@ion_mode_option
@click.option("--batch-size", default=16_384, show_default=True, help="Spectra per Arrow record batch.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Parquet file listing skipped records [default: STORE/ingest_report.parquet].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@lock_wait_option
@engine_errors
def ingest(inputs: tuple[str, ...], store: Path, on_invalid: str, dataset: str | None, ion_mode: str | None,
           batch_size: int, report_path: Path | None, as_json: bool, quiet: bool, lock_wait: float) -> None:
    """Ingest INPUTS (MGF, MSP, mzML, mzXML files, plain or .gz; Parquet; directories, globs or @file lists)."""
    from engine.jobs.ingest import ingest as run_ingest

    try:
        result = run_ingest(inputs, store, on_invalid=on_invalid,  # type: ignore[arg-type]
                            dataset=dataset, default_ion_mode=ion_mode,  # type: ignore[arg-type]
                            batch_size=batch_size, progress=not quiet,
                            report_path=report_path or store / "ingest_report.parquet", lock_wait=lock_wait)
    except ValueError as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(str(exc)) from None
    report = result.report
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(report.summary())
        click.echo(f"table {store}/spectra: {result.rows_in_table} rows; "
                   f"{result.seconds:.1f} s, {result.spectra_per_second:,.0f} spectra/s")
        if report.n_skipped:
            click.echo(f"skipped records listed in {report_path or store / 'ingest_report.parquet'}")
    if report.files_failed and report.files_failed >= report.files - report.files_unchanged and not report.kept:
        raise click.ClickException(f"nothing ingested: all {report.files_failed} new input file(s) failed "
                                   f"(see {report_path or store / 'ingest_report.parquet'})")
