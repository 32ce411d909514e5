"""CI runs what the README tells a developer to run, then the linters."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command_then_ruff_and_mypy() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    marker = next(i for i, line in enumerate(readme) if line.startswith("# 2. Set up and run the tests"))
    command = readme[marker + 1].strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci, f"README's test command is not a line of .ci/run: {command}"
    after = ci[ci.index(command) + 1:]
    assert any(line.startswith("ruff check") for line in after) and "mypy" in after
