"""Where a query's candidate structures come from: fixed per-query lists, PubChem, or a local molecule table.

One :class:`CandidateSource` serves ``engine rank`` and ``engine annotate`` alike. PubChem is asked first
when enabled; when it cannot be reached and a local table is available, the source falls back to it
once, with a logged message naming the table, and stays local for the rest of the job.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from engine.core.errors import InvalidRecordError, OfflineError
from engine.core.paths import BUNDLED_CANDIDATES
from engine.queries.candidates import CandidateQuery, MoleculeTable, read_candidate_lists, select_candidates
from engine.queries.pubchem import PubChemClient, pubchem_candidates

log = logging.getLogger(__name__)



@dataclass
class CandidateSource:
    """Candidates per query batch from ``lists``, else PubChem (``client``), else the local ``table_path``.

    A query the selection cannot use (no formula for ``by="formula"``; an adduct it cannot read, no
    precursor or no ion mode for ``by="mass"``) raises its :class:`InvalidRecordError` with
    ``on_unusable="error"``; with ``"skip"`` it gets no candidates and is counted in ``skipped`` by reason.
    """

    by: Literal["formula", "mass"] = "formula"
    tolerance_ppm: float = 10.0
    lists: Any = None
    client: Any = None
    table_path: str | None = None
    fell_back: bool = False
    on_unusable: Literal["error", "skip"] = "error"
    skipped: Counter[str] = field(default_factory=Counter)
    _table: MoleculeTable | None = field(default=None, repr=False)

    def table(self) -> MoleculeTable:
        """The local molecule table, opened on first use."""
        if self._table is None:
            if self.table_path is None:
                raise OfflineError("no local candidate table to fall back to")
            self._table = MoleculeTable.open(self.table_path)
        return self._table

    def queries(self, batch: pa.RecordBatch | pa.Table) -> list[CandidateQuery]:
        """One candidate query per spectrum row of ``batch``."""
        cols = ["spectrum_id", "precursor_mz", "ion_mode", "adduct", "formula"]
        return [CandidateQuery(r["spectrum_id"], r["precursor_mz"], r["ion_mode"], r["adduct"], r["formula"])
                for r in batch.select(cols).to_pylist()]

    def usable(self, queries: list[CandidateQuery]) -> tuple[list[CandidateQuery], dict[str, str]]:
        """The queries candidates can be selected for, and the others' reasons (query id -> reason)."""
        kept: list[CandidateQuery] = []
        unusable: dict[str, str] = {}
        for q in queries:
            try:
                if self.by == "mass":
                    q.neutral_mass()
                elif not q.formula:
                    raise InvalidRecordError("no FORMULA field: cannot select candidates by formula (select by mass)",
                                             record=q.query_id, reason="missing_formula")
            except InvalidRecordError as exc:
                if self.on_unusable == "error":
                    raise
                unusable[q.query_id] = exc.reason
                self.skipped[exc.reason] += 1
                continue
            kept.append(q)
        return kept, unusable

    def select(self, batch: pa.RecordBatch | pa.Table) -> tuple[Any, dict[str, str]]:
        """Candidates for the spectra of ``batch`` and the spectra skipped as unusable (id -> reason)."""
        if self.lists is not None:
            return self.lists, {}
        qs, unusable = self.usable(self.queries(batch))
        return self._select(qs), unusable

    def for_batch(self, batch: pa.RecordBatch | pa.Table) -> Any:
        """Candidates for the spectra of ``batch`` (a table or per-query lists, as the rankers take them)."""
        return self.select(batch)[0]

    def _select(self, qs: list[CandidateQuery]) -> Any:
        if self.client is not None:
            try:
                return pubchem_candidates(qs, self.client, by=self.by, tolerance_ppm=self.tolerance_ppm)
            except OfflineError as exc:
                if self.table_path is None:
                    raise
                log.warning("%s; falling back to local candidates from %s", str(exc).split(";")[0], self.table_path)
                self.client = None
                self.fell_back = True
        return select_candidates(qs, self.table(), by=self.by, tolerance_ppm=self.tolerance_ppm)


def candidate_source(*, candidates_path: str | None = None, lists_path: str | None = None, pubchem: bool = False,
                     pubchem_cache: str | Path | None = None, pubchem_timeout_s: float = 15.0,
                     by: Literal["formula", "mass"] = "formula", tolerance_ppm: float = 10.0,
                     bundled_fallback: bool = True, on_unusable: Literal["error", "skip"] = "error",
                     table: MoleculeTable | None = None) -> CandidateSource:
    """Resolve the candidate options of a job into one :class:`CandidateSource`.

    Without ``candidates_path``, lists or PubChem the bundled candidate set is used (and logged);
    with PubChem and no local table, an unreachable PubChem is an :class:`OfflineError`. ``table`` is
    ``candidates_path`` already opened.
    """
    if lists_path is not None and (candidates_path is not None or pubchem):
        raise ValueError("candidate lists exclude a candidate table and PubChem")
    lists = read_candidate_lists(lists_path) if lists_path is not None else None
    client = None
    if pubchem:
        cache = Path(pubchem_cache) if pubchem_cache is not None else None
        client = PubChemClient(cache_path=cache, timeout_s=pubchem_timeout_s)
    table_path = candidates_path
    if table_path is None and lists is None and not pubchem and bundled_fallback:
        log.info("no candidate table given; using the bundled candidate set %s", BUNDLED_CANDIDATES)
        table_path = str(BUNDLED_CANDIDATES)
    return CandidateSource(by=by, tolerance_ppm=tolerance_ppm, lists=lists, client=client, table_path=table_path,
                           on_unusable=on_unusable, _table=table)
