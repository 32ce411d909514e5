"""Options and error handling shared by the commands."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

import click

from engine.core.errors import EngineError, describe_os_error

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")


def engine_errors(func: F) -> F:
    """Turn library errors, and ``OSError`` (full disk, read-only, permission), into a one-line
    ``click.ClickException`` naming the path and the cause (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EngineError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a full disk, a read-only output, a missing permission: one line
            raise click.ClickException(describe_os_error(exc)) from None

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


lock_wait_option = click.option(
    "--lock-wait", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
    help="When another command is writing to the same output, wait up to SECONDS for it to finish "
         "(0: stop at once with a message naming it).")
dataset_option = click.option(
    "--dataset", default=None, metavar="MSV...",
    help="MassIVE accession; spectrum identifiers become USIs (mzspec:MSV...:<file>:scan:<n>).")
ion_mode_option = click.option(
    "--ion-mode", type=click.Choice(["positive", "negative"]), default=None,
    help="Ion mode for records that carry none (no IONMODE, polarity, charge sign or adduct).")


config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None, metavar="TOML",
    help="Read this command's settings from a TOML file (keys: the option names with '_' for '-'; an unknown key "
         "is an error); options given on the command line override the file.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where the model runs: auto takes the GPU when torch sees one (CUDA), else the CPU.")


def resolve_settings(cls: type[S], config_path: str | None, *, rename: dict[str, str] | None = None) -> S:
    """Settings ``cls`` of the running command: the ``--config`` file (if any), then every option given
    explicitly on the command line (or by environment) on top; options left at their default do not
    override the file. ``rename`` maps parameter names to field names where they differ. A bad value or
    unknown key is a usage error naming it (and the file)."""
    from click.core import ParameterSource

    from engine.core.config import load_toml

    ctx = click.get_current_context()
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    rename = rename or {}
    given = {rename.get(name, name): _plain(value) for name, value in ctx.params.items()
             if rename.get(name, name) in names
             and ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    try:
        return load_toml(cls, config_path, overrides=given) if config_path else cls(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _plain(value: Any) -> Any:
    """Command-line values as settings hold them: paths as strings, lists as tuples."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list):
        return tuple(value)
    return value
