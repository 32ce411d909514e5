"""Annotation engine for tandem mass spectra at repository scale.

The public Python API (:mod:`engine.api`) is available from the package itself, imported on first use so
that ``import engine.core.records`` stays light::

    import engine
    library = engine.open_library()
    hits = engine.search("queries.mgf", library, mode="identity")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["SpectralLibrary", "__version__", "annotate", "embed_spectra", "open_library", "open_model", "rank",
           "search", "search_tables", "spectrum_batches"]
#: Names ``engine`` exports from :mod:`engine.api`.
API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from engine.api import (
        SpectralLibrary,
        annotate,
        embed_spectra,
        open_library,
        open_model,
        rank,
        search,
        search_tables,
        spectrum_batches,
    )


def __getattr__(name: str) -> Any:
    if name in API:
        return getattr(importlib.import_module("engine.api"), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
