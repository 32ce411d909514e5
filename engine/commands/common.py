"""Options and error handling shared by the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from engine.errors import EngineError

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
dataset_option = click.option(
    "--dataset", default=None, metavar="MSV...",
    help="MassIVE accession; spectrum identifiers become USIs (mzspec:MSV...:<file>:scan:<n>).")
ion_mode_option = click.option(
    "--ion-mode", type=click.Choice(["positive", "negative"]), default=None,
    help="Ion mode for records that carry none (no IONMODE, polarity, charge sign or adduct).")
