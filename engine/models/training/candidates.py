"""Candidate structures by formula and by monoisotopic mass (hard negatives; benchmark candidate sets)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class CandidateTable:
    """Columns of ``candidates.parquet`` as arrays, one row per 2D structure (first InChIKey block)."""

    smiles: pa.Array
    inchikey14: npt.NDArray[np.str_]
    formula_code: npt.NDArray[np.int64]
    formulas: list[str]
    mass: npt.NDArray[np.float64]
    _formula_index: dict[str, npt.NDArray[np.int64]]
    _mass_order: npt.NDArray[np.int64]
    _sorted_mass: npt.NDArray[np.float64]

    @classmethod
    def load(cls, path: str | Path) -> CandidateTable:
        table = pq.read_table(path, columns=["smiles", "inchikey14", "formula", "monoisotopic_mass"])
        # one row per 2D structure: keep the first occurrence of every inchikey14
        ik: Any = table.column("inchikey14").combine_chunks()
        ik_np = np.asarray(ik.to_numpy(zero_copy_only=False)).astype(str)
        _, first = np.unique(ik_np, return_index=True)
        first.sort()
        table = table.take(first.astype(np.int64))
        ik_np = ik_np[first]
        formula: Any = pc.dictionary_encode(table.column("formula").combine_chunks())
        codes = np.asarray(formula.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        formulas = formula.dictionary.to_pylist()
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        groups = np.split(order, bounds)
        index = {formulas[int(codes[g[0]])]: g for g in groups if g.shape[0]}
        mass = np.asarray(table.column("monoisotopic_mass").to_numpy(), dtype=np.float64)
        order = np.argsort(mass, kind="stable")
        return cls(table.column("smiles").combine_chunks(), ik_np, codes, formulas, mass, index, order,
                   mass[order])

    def __len__(self) -> int:
        return int(self.mass.shape[0])

    def same_formula(self, formula: str) -> npt.NDArray[np.int64]:
        """Rows with exactly ``formula``."""
        return self._formula_index.get(formula, np.zeros(0, np.int64))

    def nearest_mass(self, mass: float, k: int) -> npt.NDArray[np.int64]:
        """The ``k`` rows nearest in monoisotopic mass to ``mass`` (closest first)."""
        i = int(np.searchsorted(self._sorted_mass, mass))
        lo, hi = max(0, i - k), min(len(self), i + k)
        window = self._mass_order[lo:hi]
        return window[np.argsort(np.abs(self.mass[window] - mass), kind="stable")[:k]]

    def rows_of(self, inchikey14: Iterable[str]) -> npt.NDArray[np.bool_]:
        """Mask of rows whose inchikey14 is in ``inchikey14``."""
        return np.isin(self.inchikey14, np.array(list(inchikey14), dtype=str))

    def smiles_of(self, rows: npt.NDArray[np.int64]) -> list[str]:
        return [str(s) for s in self.smiles.take(pa.array(rows, pa.int64())).to_pylist()]
