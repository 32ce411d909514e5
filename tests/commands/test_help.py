"""Every command and subcommand of the CLI says what it does: it has help text, and ``--help`` prints it."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from engine.commands.cli import COMMANDS, main


def _walk(command: click.Command, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
            found += _walk(sub, (*path, name))
    return found


ALL = _walk(main, ("engine",))


def test_every_registered_command_loads() -> None:
    listed = main.list_commands(click.Context(main))
    assert listed == list(COMMANDS), f"registered but not loadable: {sorted(set(COMMANDS) - set(listed))}"


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_command_has_help(path: tuple[str, ...], command: click.Command) -> None:
    text = (command.help or command.short_help or "").strip()
    assert text, f"`{' '.join(path)}` has no help text"
    result = CliRunner().invoke(main, [*path[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert text.split("\n")[0][:40] in " ".join(result.output.split())


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    missing = [p.name for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert not missing, f"`{' '.join(path)}` options without help: {missing}"
