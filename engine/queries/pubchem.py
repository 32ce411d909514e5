"""Candidate structures from PubChem (through pubchempy), cached on disk, never hanging when offline.

Every request runs in a daemon thread with a deadline (``timeout_s``); a connection failure or a
missed deadline raises :class:`~engine.core.errors.OfflineError` at once, and the client then stays offline
for the rest of the run instead of waiting again for every query. Answers are cached in a small SQLite
file keyed by the query (``formula:C6H12O6`` or ``mass:180.06299:180.06371``), so a repeated run works
without the network.

Formula searches go through ``pubchempy.get_properties(..., namespace="formula")`` (PubChem's
asynchronous formula search, polled by pubchempy). PubChem's mass-range search has a URL that
pubchempy cannot build, so its CID list is fetched from ``{API_BASE}/compound/monoisotopic_mass/range``
with urllib, and the properties of those CIDs again through pubchempy.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from engine.core.errors import InvalidRecordError, OfflineError
from engine.queries.candidates import (
    CANDIDATE_SCHEMA,
    CandidateBy,
    CandidateQuery,
    dedupe_candidates,
    normalize_formula,
)

T = TypeVar("T")
PROPERTIES = ("SMILES", "InChIKey", "MolecularFormula", "MonoisotopicMass")
_SMILES_KEYS = ("SMILES", "IsomericSMILES", "CanonicalSMILES", "ConnectivitySMILES")


def default_cache_path() -> Path:
    """``$ENGINE_CACHE_DIR/pubchem.sqlite``, else ``~/.cache/ms-annotation-engine/pubchem.sqlite``."""
    root = os.environ.get("ENGINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ms-annotation-engine")
    return Path(root) / "pubchem.sqlite"


def _run_with_deadline(func: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``func`` in a daemon thread; raise :class:`OfflineError` when it fails to connect or is late."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="pubchem-request", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise OfflineError(f"PubChem did not answer {what} within {timeout_s:g} s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, (OSError, TimeoutError)):  # URLError, socket errors, ssl errors
            reason = getattr(exc, "reason", exc)
            raise OfflineError(f"PubChem unreachable ({reason})") from None
        import pubchempy

        if isinstance(exc, pubchempy.PubChemHTTPError):
            raise OfflineError(f"PubChem refused {what}: {exc}") from None
        raise exc
    return box["value"]


@dataclass
class PubChemClient:
    """Look up candidate structures in PubChem by formula or by neutral monoisotopic mass."""

    cache_path: Path | None = None
    timeout_s: float = 15.0
    max_records: int = 5000
    api_base: str | None = None
    offline: bool = field(default=False, init=False)
    _offline_reason: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cache_path is None:
            self.cache_path = default_cache_path()

    # -- cache ---------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        assert self.cache_path is not None
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(self.cache_path))
        con.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, json TEXT NOT NULL)")
        return con

    def cached(self, key: str) -> list[dict[str, Any]] | None:
        """The cached answer for ``key``, or ``None``."""
        if self.cache_path is None or not self.cache_path.exists():
            return None
        with self._db() as con:
            row = con.execute("SELECT json FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def _store(self, key: str, records: list[dict[str, Any]]) -> None:
        with self._db() as con:
            con.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(records)))

    # -- lookups -------------------------------------------------------------------------------------
    def _fetch(self, key: str, func: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        hit = self.cached(key)
        if hit is not None:
            return hit
        if self.offline:
            raise OfflineError(self._offline_reason)
        try:
            records = _run_with_deadline(func, self.timeout_s, key)
        except OfflineError as exc:
            self.offline, self._offline_reason = True, str(exc)
            raise
        records = [_tidy(r) for r in records]
        records = [r for r in records if r["smiles"]]
        self._store(key, records)
        return records

    def by_formula(self, formula: str) -> list[dict[str, Any]]:
        """Molecules with this formula: dicts with smiles, inchikey, formula, monoisotopic_mass."""
        norm = normalize_formula(formula)

        def call() -> list[dict[str, Any]]:
            import pubchempy

            return list(pubchempy.get_properties(list(PROPERTIES), norm, namespace="formula",
                                                 MaxRecords=self.max_records))

        return self._fetch(f"formula:{norm}", call)

    def mass_range_url(self, neutral_mass: float, tolerance_ppm: float) -> str:
        """The PUG REST URL of the CIDs with monoisotopic mass in the window."""
        import pubchempy

        base = self.api_base or pubchempy.API_BASE
        delta = neutral_mass * tolerance_ppm * 1e-6
        low, high = neutral_mass - delta, neutral_mass + delta
        return f"{base}/compound/monoisotopic_mass/range/{low:.5f}/{high:.5f}/cids/JSON"

    def by_mass(self, neutral_mass: float, *, tolerance_ppm: float = 10.0) -> list[dict[str, Any]]:
        """Molecules within ``tolerance_ppm`` of ``neutral_mass`` (at most ``max_records``)."""
        url = self.mass_range_url(neutral_mass, tolerance_ppm)
        key = "mass:" + "/".join(url.split("/range/")[1].split("/")[:2])

        def call() -> list[dict[str, Any]]:
            import urllib.request

            import pubchempy

            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                answer = json.loads(response.read().decode())
            cids = answer.get("IdentifierList", {}).get("CID", [])[: self.max_records]
            if not cids:
                return []
            return list(pubchempy.get_properties(list(PROPERTIES), cids, namespace="cid"))

        return self._fetch(key, call)


def _tidy(record: dict[str, Any]) -> dict[str, Any]:
    smiles = next((record[k] for k in _SMILES_KEYS if record.get(k)), None)
    mass = record.get("MonoisotopicMass")
    return {"smiles": smiles, "inchikey": record.get("InChIKey"), "formula": record.get("MolecularFormula"),
            "monoisotopic_mass": float(mass) if mass is not None else None, "cid": record.get("CID")}


def pubchem_candidates(queries: Sequence[CandidateQuery], client: PubChemClient, *,
                       by: CandidateBy = "formula", tolerance_ppm: float = 10.0) -> pa.Table:
    """Candidates per query from PubChem (:data:`~engine.queries.candidates.CANDIDATE_SCHEMA`).

    Raises :class:`OfflineError` (message ends with what to do instead) when PubChem is unreachable and
    an answer is not in the cache.
    """
    rows: dict[str, list[Any]] = {name: [] for name in CANDIDATE_SCHEMA.names}
    try:
        for q in queries:
            if by == "formula":
                if not q.formula:
                    raise InvalidRecordError("no FORMULA field: cannot search PubChem by formula (use --by mass)",
                                             record=q.query_id, reason="missing_formula")
                found = client.by_formula(q.formula)
            else:
                found = client.by_mass(q.neutral_mass(), tolerance_ppm=tolerance_ppm)
            for r in found:
                rows["query_id"].append(q.query_id)
                for name in ("smiles", "inchikey", "formula", "monoisotopic_mass"):
                    rows[name].append(r[name])
    except OfflineError as exc:
        raise OfflineError(f"{exc}; use --candidates MOLECULES or --candidate-lists LISTS.parquet "
                           f"for local candidates") from None
    return dedupe_candidates(pa.table(rows, schema=CANDIDATE_SCHEMA))
