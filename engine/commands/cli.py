"""Command-line interface: a thin layer over the library API.

Each command group lives in :mod:`engine.commands` and is imported lazily so ``engine --help`` is fast.
"""

from __future__ import annotations

import importlib
import logging

import click

#: command name -> (module, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("engine.commands.ingest", "ingest"),
    "train": ("engine.commands.train", "train"),
    "embed": ("engine.commands.embed", "embed"),
    "library": ("engine.commands.library", "library"),
    "molecules": ("engine.commands.molecules", "molecules"),
    "index": ("engine.commands.index", "index"),
    "search": ("engine.commands.search", "search"),
    "rank": ("engine.commands.rank", "rank"),
    "report": ("engine.commands.report", "report"),
    "annotate": ("engine.commands.annotate", "annotate"),
    "network": ("engine.commands.network", "network"),
    "repository": ("engine.commands.repository", "repository"),
    "lookup": ("engine.commands.lookup", "lookup"),
    "serve": ("engine.commands.serve", "serve"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; missing modules are simply not listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
        cmd = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd


def setup_logging(verbose: int, quiet: bool) -> None:
    """Engine log records to stderr: notes and warnings by default, debug with ``-v``, warnings only with
    ``--quiet``. Configured here, once per command-line run; library code only creates loggers."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if verbose == 0 else "%(levelname)s %(name)s: %(message)s"))
    for name in ("engine", "indexes"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


@click.group(cls=LazyGroup)
@click.version_option(package_name="ms-annotation-engine")
@click.option("-v", "--verbose", count=True, help="More log output (debug messages from the engine's modules).")
@click.option("--quiet", "-q", "quiet_logs", is_flag=True, help="Only warnings and errors on stderr.")
def main(verbose: int, quiet_logs: bool) -> None:
    """Annotate tandem mass spectra at repository scale: ingest, embed, index, search, rank, annotate."""
    setup_logging(verbose, quiet_logs)
