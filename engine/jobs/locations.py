"""Where the bundled artifacts live and how a library path is resolved, without importing torch or FAISS.

Kept apart from :mod:`engine.jobs.artifacts` (which opens them) so settings and the no-op rerun check of a
finished job stay cheap to import.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.errors import EngineError
from engine.core.paths import DEFAULT_LIBRARY, DEFAULT_MODEL


class MissingArtifactError(EngineError, FileNotFoundError):
    """A model, library or table that a job needs does not exist."""


def library_path(path: str | Path | None) -> Path:
    """``path``, or the bundled library; a missing library is a :class:`MissingArtifactError`."""
    resolved = Path(path) if path else DEFAULT_LIBRARY
    if not resolved.exists():
        raise MissingArtifactError(f"library not found: {resolved} (give --library LIBRARY; build one with "
                                   f"'engine library build')")
    return resolved


def checkpoint_path(path: str | Path | None = None) -> Path:
    """``path``, or the bundled model; a missing checkpoint is a :class:`MissingArtifactError`."""
    if path is None and not DEFAULT_MODEL.exists():
        raise MissingArtifactError(f"no bundled model at {DEFAULT_MODEL}; give --model CKPT")
    if path is not None and not Path(path).is_file():
        raise MissingArtifactError(f"model checkpoint not found: {path}")
    return DEFAULT_MODEL if path is None else Path(path)
