"""Command-line interface: a thin layer over the library API.

Each command group lives in :mod:`engine.commands` and is imported lazily so ``engine --help`` is fast.
"""

from __future__ import annotations

import importlib

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


@click.group(cls=LazyGroup)
@click.version_option(package_name="ms-annotation-engine")
def main() -> None:
    """Annotate tandem mass spectra at repository scale: ingest, embed, index, search, rank, annotate."""
