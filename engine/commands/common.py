"""Options and error handling shared by the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from engine.core.errors import EngineError

F = TypeVar("F", bound=Callable[..., Any])


def engine_errors(func: F) -> F:
    """Turn library errors into a one-line ``click.ClickException`` (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EngineError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


on_invalid_option = click.option(
    "--on-invalid", type=click.Choice(["error", "skip"]), default="error", show_default=True,
    help="error: stop at the first bad record with a message naming file and record; "
         "skip: keep every good record and count the bad ones by reason in the report.")
report_option = click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), default=None,
    help="Write skipped records (file, record, reason) to this Parquet file.")


def echo_skips(report: Any, report_path: str | None) -> None:
    """Skipped records by reason on stderr, and the rejects (file, record, reason, message) as Parquet
    when ``report_path`` is given (``report`` is an :class:`engine.io.stream.ReadReport`)."""
    for reason, n in sorted(report.skipped.items()):
        click.echo(f"  skipped {reason}: {n}", err=True)
    if report_path:
        report.write_parquet(report_path)
        click.echo(f"skipped records: {report_path}", err=True)


dataset_option = click.option(
    "--dataset", default=None, metavar="MSV...",
    help="MassIVE accession; spectrum identifiers become USIs (mzspec:MSV...:<file>:scan:<n>).")
ion_mode_option = click.option(
    "--ion-mode", type=click.Choice(["positive", "negative"]), default=None,
    help="Ion mode for records that carry none (no IONMODE, polarity, charge sign or adduct).")
