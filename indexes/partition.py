"""Shard keys of a vector index: ion mode x precursor-mass range.

Every row goes to exactly one partition: its ion mode (``positive``/``negative``; molecules use the
single mode ``neutral``) and the mass range ``[mass_lo, mass_hi)`` holding its precursor m/z (or its
monoisotopic mass). The ranges of one mode tile ``[0, inf)``, so rows added later always have a home.
:meth:`PartitionScheme.plan` cuts each mode at mass quantiles so that no partition holds more than
``target_rows`` rows; the bounds are then frozen in the index manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NEUTRAL = "neutral"


@dataclass(frozen=True)
class Partition:
    """One shard: an ion mode and a mass range ``[mass_lo, mass_hi)``."""

    ion_mode: str
    ordinal: int
    mass_lo: float
    mass_hi: float

    @property
    def name(self) -> str:
        """File-name-safe identifier, e.g. ``positive-002``."""
        return f"{self.ion_mode}-{self.ordinal:03d}"

    def overlaps(self, lo: float, hi: float) -> bool:
        """Whether the closed window ``[lo, hi]`` intersects this partition."""
        return lo < self.mass_hi and hi >= self.mass_lo


@dataclass(frozen=True)
class PartitionScheme:
    """Interior mass edges per ion mode; ``edges[mode] = (e1, e2, ...)`` gives ``[0,e1), [e1,e2), ...``."""

    edges: Mapping[str, tuple[float, ...]]

    def __post_init__(self) -> None:
        for mode, cuts in self.edges.items():
            if list(cuts) != sorted(set(cuts)) or any(c <= 0 for c in cuts):
                raise ValueError(f"partition edges of {mode!r} must be positive and strictly increasing")

    @property
    def partitions(self) -> list[Partition]:
        """All partitions, modes in sorted order, masses ascending; position in the list = global id."""
        out: list[Partition] = []
        for mode in sorted(self.edges):
            bounds = [0.0, *self.edges[mode], math.inf]
            out += [Partition(mode, i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        return out

    def route(self, ion_mode: Sequence[str | None] | npt.NDArray[np.object_],
              mass: npt.NDArray[np.floating]) -> npt.NDArray[np.int32]:
        """Global partition id of every row (``-1`` when its ion mode has no partitions)."""
        modes = np.asarray(ion_mode, dtype=object)
        mass = np.asarray(mass, dtype=np.float64)
        out = np.full(mass.shape[0], -1, dtype=np.int32)
        first = 0
        for mode in sorted(self.edges):
            cuts = np.asarray(self.edges[mode], dtype=np.float64)
            sel = modes == mode
            out[sel] = first + np.searchsorted(cuts, mass[sel], side="right")
            first += len(cuts) + 1
        return out

    def overlapping(self, ion_mode: str | None, lo: float, hi: float) -> list[int]:
        """Global ids of the partitions of ``ion_mode`` (all modes when None) that meet ``[lo, hi]``."""
        return [i for i, p in enumerate(self.partitions)
                if (ion_mode is None or p.ion_mode == ion_mode) and p.overlaps(lo, hi)]

    def to_dict(self) -> dict[str, list[float]]:
        return {mode: list(cuts) for mode, cuts in sorted(self.edges.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> PartitionScheme:
        return cls({mode: tuple(float(c) for c in cuts) for mode, cuts in data.items()})

    @classmethod
    def plan(cls, ion_mode: Sequence[str | None] | npt.NDArray[np.object_], mass: npt.NDArray[np.floating],
             *, target_rows: int) -> PartitionScheme:
        """Cut each mode at mass quantiles (rounded to 0.01 Da) into ``ceil(n / target_rows)`` ranges."""
        if target_rows < 1:
            raise ValueError("target_rows must be positive")
        modes = np.asarray(ion_mode, dtype=object)
        mass = np.asarray(mass, dtype=np.float64)
        edges: dict[str, tuple[float, ...]] = {}
        for mode in sorted({m for m in modes.tolist() if m is not None}):
            m = mass[modes == mode]
            k = math.ceil(m.shape[0] / target_rows)
            cuts = np.round(np.quantile(m, np.arange(1, k) / k), 2) if k > 1 else np.zeros(0)
            edges[str(mode)] = tuple(float(c) for c in np.unique(cuts) if c > 0)
        return cls(edges)
