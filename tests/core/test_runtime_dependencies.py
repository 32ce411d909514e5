"""The engine runs on its runtime dependencies: dev-only packages (test references, benchmark peers) are
never imported by ``engine`` or ``indexes``. CI installs ``[dev]``, so this is checked by blocking them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: in ``[dev]`` only for tests and benchmarks (ray is the ``distributed`` extra, imported only by the Ray runner)
DEV_ONLY = ["pyteomics", "psims", "matchms", "pytest", "ray"]

_BLOCKER = """
import importlib, importlib.abc, pkgutil, sys
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"dev-only package {name} imported", name=name)
        return None
sys.meta_path.insert(0, Block())
import engine, indexes
names = []
for pkg in (engine, indexes):
    for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(mod.name)
        names.append(mod.name)
from click.testing import CliRunner
from engine.commands.cli import main
result = CliRunner().invoke(main, ["annotate", "--help"])
assert result.exit_code == 0, result.output
print(len(names))
"""


def test_dev_only_packages_are_dev_extras() -> None:
    tomllib = pytest.importorskip("tomllib")   # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for name in DEV_ONLY:
        assert name not in runtime, f"{name} is a runtime dependency"
    dev = " ".join(project["optional-dependencies"]["dev"])
    assert all(name in dev for name in DEV_ONLY)


def test_engine_imports_without_dev_packages() -> None:
    run = subprocess.run([sys.executable, "-c", _BLOCKER, ",".join(DEV_ONLY)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.strip().splitlines()[-1]) > 40   # every module of both packages was imported


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere (function-level imports included)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_a_dev_only_package_lazily() -> None:
    allowed = {("engine/jobs/ray_runner.py", "ray"),   # the Ray runner needs the ``distributed`` extra
               ("engine/io/matchms_adapter.py", "matchms")}   # the adapter needs the ``matchms`` extra
    offenders = []
    for pkg in ("engine", "indexes"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            offenders += [(rel, name) for name in _imported_packages(path) & set(DEV_ONLY)
                          if (rel, name) not in allowed]
    assert offenders == []
