"""Candidate structures per query: from a local molecule table by formula or neutral mass, or from lists.

A molecule table is a Parquet file (or a directory of them) with columns ``smiles``, ``inchikey``,
``formula``, ``monoisotopic_mass``, or a LanceDB directory with a ``molecules`` table (as written by
``engine molecules build``). Candidates come back as one long Arrow table (:data:`CANDIDATE_SCHEMA`):
one row per (query, candidate), deduplicated by InChIKey within each query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.core.adducts import default_adduct, parse_adduct
from engine.core.errors import FileFormatError, InvalidRecordError
from engine.core.records import Spectrum
from engine.core.schema import column

CandidateBy = Literal["formula", "mass"]
MOLECULE_COLUMNS = ("smiles", "inchikey", "formula", "monoisotopic_mass")
CANDIDATE_SCHEMA = pa.schema([column("query_id"), column("smiles", nullable=False), column("inchikey"),
                              column("formula"), column("monoisotopic_mass")])
_ELEMENT_RE = re.compile(r"([A-Z][a-z]?)(\d*)")
_CHARGED_RE = re.compile(r"^\[?([A-Za-z0-9]+?)\]?(?:[+-]\d*|\d*[+-])?$")
#: Trailing charge of an RDKit formula (``C5H12N+``, ``C2H8N2+2``), stripped before lookups.
_TRAILING_CHARGE = r"[+-]\d*$"


def normalize_formula(formula: str) -> str:
    """Hill-order formula without charge: ``H12C6O6`` -> ``C6H12O6``; ``[C5H12N]+`` -> ``C5H12N``.

    Raises ``ValueError`` for text that is not a plain formula (isotopes, dots, unknown syntax).
    """
    m = _CHARGED_RE.match(formula.strip())
    if m is None:
        raise ValueError(f"cannot read formula {formula!r}")
    text = m.group(1)
    counts: dict[str, int] = {}
    pos = 0
    for el in _ELEMENT_RE.finditer(text):
        if el.start() != pos:
            break
        counts[el.group(1)] = counts.get(el.group(1), 0) + (int(el.group(2)) if el.group(2) else 1)
        pos = el.end()
    if pos != len(text) or not counts:
        raise ValueError(f"cannot read formula {formula!r}")
    order = ["C", "H", *sorted(k for k in counts if k not in ("C", "H"))] if "C" in counts else sorted(counts)
    return "".join(f"{el}{counts[el] if counts[el] != 1 else ''}" for el in order if counts.get(el, 0) > 0)


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    """What candidate selection needs to know about a query spectrum."""

    query_id: str
    precursor_mz: float | None = None
    ion_mode: str | None = None
    adduct: str | None = None
    formula: str | None = None

    @classmethod
    def from_spectrum(cls, spectrum: Spectrum) -> CandidateQuery:
        return cls(spectrum.spectrum_id, spectrum.precursor_mz, spectrum.ion_mode, spectrum.adduct,
                   spectrum.formula)

    def neutral_mass(self) -> float:
        """Neutral monoisotopic mass from the precursor m/z and adduct (default [M+H]+ / [M-H]-)."""
        if self.precursor_mz is None:
            raise InvalidRecordError("no precursor m/z: cannot select candidates by mass",
                                     record=self.query_id, reason="missing_precursor")
        if self.adduct:
            try:
                adduct = parse_adduct(self.adduct)
            except ValueError as exc:
                raise InvalidRecordError(str(exc), record=self.query_id, reason="unknown_adduct") from None
        elif self.ion_mode in ("positive", "negative"):
            adduct = default_adduct(self.ion_mode)
        else:
            raise InvalidRecordError("no adduct and no ion mode: cannot compute the neutral mass "
                                     "(give --ion-mode)", record=self.query_id, reason="missing_ion_mode")
        return adduct.neutral_from_mz(self.precursor_mz)


class MoleculeTable:
    """An in-memory molecule table with lookups by formula and by monoisotopic mass."""

    def __init__(self, table: pa.Table, *, source: str = "<table>") -> None:
        missing = [c for c in MOLECULE_COLUMNS if c not in table.column_names]
        if missing:
            raise FileFormatError(f"molecule table lacks columns {missing}; needs {list(MOLECULE_COLUMNS)}",
                                  path=source, reason="missing_columns")
        self.source = source
        mass = table.column("monoisotopic_mass").to_numpy(zero_copy_only=False).astype(np.float64)
        mass = np.where(np.isfinite(mass), mass, np.inf)
        order = np.argsort(mass, kind="stable")
        self.table = table.take(order)
        self._mass = mass[order]
        formulas = pc.replace_substring_regex(self.table.column("formula").combine_chunks(),
                                              pattern=_TRAILING_CHARGE, replacement="")
        enc = cast(pa.DictionaryArray, pc.dictionary_encode(formulas))
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes = np.where(enc.is_null().to_numpy(zero_copy_only=False), -1, codes)
        self._formula_names = {f: i for i, f in enumerate(enc.dictionary.to_pylist())}
        self._formula_order = np.argsort(codes, kind="stable")
        self._formula_codes = codes[self._formula_order]

    def __len__(self) -> int:
        return self.table.num_rows

    @classmethod
    def open(cls, path: str | Path) -> MoleculeTable:
        """Open a Parquet file / directory of Parquet files, or a LanceDB directory with ``molecules``."""
        p = Path(path)
        if not p.exists():
            raise FileFormatError("no such molecule table", path=str(p), reason="file_error")
        if p.is_dir() and (any(p.glob("*.lance")) or p.suffix == ".lance"):
            import lancedb

            db = lancedb.connect(str(p.parent if p.suffix == ".lance" else p))
            name = p.stem if p.suffix == ".lance" else "molecules"
            if name not in db.list_tables().tables:
                raise FileFormatError(f"LanceDB directory has no {name!r} table", path=str(p),
                                      reason="file_error")
            lance_table = db.open_table(name)
            cols = [c for c in (*MOLECULE_COLUMNS, "name") if c in lance_table.schema.names]
            return cls(lance_table.search().select(cols).limit(None).to_arrow(), source=str(p))
        try:
            ds = pq.ParquetDataset(str(p))
            names = ds.schema.names
            cols = [c for c in (*MOLECULE_COLUMNS, "name") if c in names]
            table = ds.read(columns=cols)
        except (OSError, pa.ArrowInvalid) as exc:
            raise FileFormatError(f"cannot read molecule table: {exc}", path=str(p),
                                  reason="file_error") from None
        return cls(table, source=str(p))

    def by_formula(self, formula: str) -> npt.NDArray[np.int64]:
        """Row indices (into :attr:`table`) of molecules with this formula (normalised)."""
        code = self._formula_names.get(formula)
        if code is None:
            try:
                code = self._formula_names.get(normalize_formula(formula))
            except ValueError:
                return np.zeros(0, dtype=np.int64)
        if code is None:
            return np.zeros(0, dtype=np.int64)
        lo, hi = np.searchsorted(self._formula_codes, [code, code + 1])
        return np.sort(self._formula_order[lo:hi]).astype(np.int64)

    def by_mass(self, neutral_mass: float, *, tolerance_ppm: float = 10.0) -> npt.NDArray[np.int64]:
        """Row indices of molecules within ``tolerance_ppm`` of ``neutral_mass``."""
        delta = abs(neutral_mass) * tolerance_ppm * 1e-6
        lo, hi = np.searchsorted(self._mass, [neutral_mass - delta, neutral_mass + delta], side="left")
        hi = np.searchsorted(self._mass, neutral_mass + delta, side="right")
        return np.arange(lo, hi, dtype=np.int64)

    def nearest_by_mass(self, neutral_mass: float, n: int) -> npt.NDArray[np.int64]:
        """Row indices of the ``n`` molecules nearest in mass (MassSpecGym-style fixed-size sets)."""
        centre = int(np.searchsorted(self._mass, neutral_mass))
        lo, hi = max(centre - n, 0), min(centre + n, len(self))
        window = np.arange(lo, hi, dtype=np.int64)
        best = np.argsort(np.abs(self._mass[window] - neutral_mass), kind="stable")[:n]
        return np.sort(window[best])


def _rows_for(queries: Sequence[CandidateQuery], rows: list[npt.NDArray[np.int64]],
              molecules: MoleculeTable) -> pa.Table:
    lengths = np.array([r.shape[0] for r in rows], dtype=np.int64)
    flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    sub = molecules.table.take(flat)
    qid = np.repeat(np.array([q.query_id for q in queries], dtype=object), lengths)
    out = pa.table({
        "query_id": pa.array(qid, pa.string()),
        "smiles": sub.column("smiles").cast(pa.string()),
        "inchikey": sub.column("inchikey").cast(pa.string()),
        "formula": sub.column("formula").cast(pa.string()),
        "monoisotopic_mass": sub.column("monoisotopic_mass").cast(pa.float64()),
    })
    return dedupe_candidates(out)


def dedupe_candidates(table: pa.Table) -> pa.Table:
    """Keep the first row per (query_id, InChIKey, or SMILES where the key is missing)."""
    if table.num_rows == 0:
        return table
    qid = np.asarray(table.column("query_id").to_pylist(), dtype=object)
    keys = [k if k else s for k, s in zip(table.column("inchikey").to_pylist(),
                                          table.column("smiles").to_pylist(), strict=True)]
    pairs = np.char.add(np.char.add(qid.astype(str), "\x1f"), np.asarray(keys, dtype=str))
    _, first = np.unique(pairs, return_index=True)
    return table.take(np.sort(first))


def candidates_by_formula(queries: Sequence[CandidateQuery], molecules: MoleculeTable) -> pa.Table:
    """All molecules with each query's formula; a query without formula raises (give --by mass)."""
    rows = []
    for q in queries:
        if not q.formula:
            raise InvalidRecordError("no FORMULA field: cannot select candidates by formula (use --by mass)",
                                     record=q.query_id, reason="missing_formula")
        rows.append(molecules.by_formula(q.formula))
    return _rows_for(queries, rows, molecules)


def candidates_by_mass(queries: Sequence[CandidateQuery], molecules: MoleculeTable, *,
                       tolerance_ppm: float = 10.0) -> pa.Table:
    """Molecules whose monoisotopic mass is within ``tolerance_ppm`` of each query's neutral mass."""
    rows = [molecules.by_mass(q.neutral_mass(), tolerance_ppm=tolerance_ppm) for q in queries]
    return _rows_for(queries, rows, molecules)


def select_candidates(queries: Sequence[CandidateQuery], molecules: MoleculeTable, *,
                      by: CandidateBy = "formula", tolerance_ppm: float = 10.0) -> pa.Table:
    """Dispatch on ``by``: ``formula`` or ``mass``."""
    if by == "formula":
        return candidates_by_formula(queries, molecules)
    if by == "mass":
        return candidates_by_mass(queries, molecules, tolerance_ppm=tolerance_ppm)
    raise ValueError(f"unknown candidate selection {by!r}; use 'formula' or 'mass'")


def read_candidate_lists(path: str | Path, *, query_ids: Iterable[str] | None = None) -> pa.Table:
    """Per-query candidate lists from ``LISTS.parquet`` (columns ``query_id``, ``smiles``; others ignored).

    Returned rows follow :data:`CANDIDATE_SCHEMA`, with ``inchikey`` / ``formula`` /
    ``monoisotopic_mass`` taken from the file when present, else null (the ranker fills them in).
    """
    p = Path(path)
    try:
        schema = pq.read_schema(str(p)) if p.is_file() else pq.ParquetDataset(str(p)).schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise FileFormatError(f"cannot read candidate lists: {exc}", path=str(p), reason="file_error") from None
    missing = [c for c in ("query_id", "smiles") if c not in schema.names]
    if missing:
        raise FileFormatError(f"candidate lists lack columns {missing}; need query_id and smiles",
                              path=str(p), reason="missing_columns")
    cols = [c for c in CANDIDATE_SCHEMA.names if c in schema.names]
    table = pq.read_table(str(p), columns=cols)
    n = table.num_rows
    out = {}
    for f in CANDIDATE_SCHEMA:
        out[f.name] = (table.column(f.name).cast(f.type) if f.name in table.column_names
                       else pa.nulls(n, f.type))
    result = pa.table(out)
    result = result.filter(pc.is_valid(result.column("smiles")))
    if query_ids is not None:
        wanted = pa.array(list(query_ids), pa.string())
        result = result.filter(pc.is_in(result.column("query_id"), value_set=wanted))
    return result.cast(CANDIDATE_SCHEMA)
