"""Molecule databases: read structures (SMILES list, CSV/TSV, Parquet, SDF), embed, store, index.

Every structure is identified by its InChIKey. When an input row carries ``inchikey``, ``formula`` and
``monoisotopic_mass`` they are used as given (fast path for prepared candidate sets); otherwise RDKit
parses the SMILES and computes canonical SMILES, InChIKey, formula and monoisotopic mass. The vector
index partitions molecules by monoisotopic mass (one "neutral" mode), so candidate retrieval is a
mass-window search (:func:`indexes.search.search` with ``mass`` = neutral mass).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from tqdm import tqdm

from engine.core.errors import FileFormatError, InvalidMoleculeError
from engine.core.schema import molecule_schema
from engine.io.inputs import file_sha256
from engine.io.stream import ReadReport
from engine.jobs.library import BuildResult
from engine.models.encoders.base import MoleculeEmbedder
from engine.models.rdkit_util import parse_smiles
from engine.models.structures import structure_chunks
from indexes.faiss_ivf import IndexPolicy
from indexes.library import MOLECULES, Library, with_embeddings
from indexes.store import FileLedger

_COLUMNS = ("smiles", "inchikey", "formula", "monoisotopic_mass", "name")
_ALIASES = {"smiles": ("smiles",), "inchikey": ("inchikey",),  # the reader names the SMILES column
            "formula": ("formula", "molecular_formula"), "monoisotopic_mass": ("monoisotopic_mass", "exact_mass"),
            "name": ("name", "title", "id", "identifier", "compound_name")}

Row = dict[str, Any]


def _pick(columns: Sequence[str]) -> dict[str, str]:
    lower = {c.lower(): c for c in columns}
    out = {}
    for field, names in _ALIASES.items():
        for n in names:
            if n in lower:
                out[field] = lower[n]
                break
    return out


def read_structures(path: str | Path) -> Iterator[Row]:
    """Yield rows with ``smiles`` and, where the file has them, ``inchikey``/``formula``/... and ``name``."""
    for table in structure_chunks(path):
        cols = _pick(table.column_names)
        data = {f: table.column(c).to_pylist() for f, c in cols.items()}
        for i in range(table.num_rows):
            row: Row = {f: (None if v[i] == "" else v[i]) for f, v in data.items()}
            if row.get("monoisotopic_mass") is not None:
                row["monoisotopic_mass"] = float(row["monoisotopic_mass"])
            yield row


def complete(row: Row, *, where: str, record: str) -> Row:
    """Fill InChIKey, formula, mass and canonical SMILES with RDKit unless all are given."""
    if row.get("inchikey") and row.get("formula") and row.get("monoisotopic_mass") is not None \
            and row.get("smiles"):
        return row
    from rdkit import Chem
    from rdkit.Chem import Descriptors, rdMolDescriptors

    smiles = row.get("smiles")
    mol = parse_smiles(smiles)
    if mol is None:
        raise InvalidMoleculeError(f"SMILES {smiles!r} cannot be parsed", path=where, record=record,
                                   reason="invalid_smiles")
    inchikey = Chem.MolToInchiKey(mol)
    if not inchikey:
        raise InvalidMoleculeError("no InChIKey for this structure", path=where, record=record,
                                   reason="invalid_smiles")
    mass = float(Descriptors.ExactMolWt(mol))  # type: ignore[attr-defined]
    return {"smiles": Chem.MolToSmiles(mol), "inchikey": inchikey,
            "formula": rdMolDescriptors.CalcMolFormula(mol), "monoisotopic_mass": mass, "name": row.get("name")}


def _embed(embedder: MoleculeEmbedder, rows: list[Row], *, on_invalid: str, report: Any, where: str
           ) -> tuple[list[Row], npt.NDArray[np.float32]]:
    smiles = [r["smiles"] for r in rows]
    try:
        return rows, embedder.embed_smiles(smiles)
    except InvalidMoleculeError:
        if on_invalid == "error":
            raise
    kept, embs = [], []
    for r in rows:  # find the bad ones
        try:
            embs.append(embedder.embed_smiles([r["smiles"]])[0])
            kept.append(r)
        except InvalidMoleculeError as exc:
            report.reject(InvalidMoleculeError(exc.detail, path=where, record=repr(r["smiles"]),
                                               reason="invalid_smiles"))
    dim = embedder.dim
    return kept, (np.stack(embs) if embs else np.zeros((0, dim), np.float32))


def build_molecule_db(inputs: Sequence[str | Path], out: str | Path, embedder: MoleculeEmbedder, *,
                      on_invalid: str = "error", batch_size: int = 4096, policy: IndexPolicy | None = None,
                      progress: bool = True) -> BuildResult:
    """Read structure files, embed the molecules and store + index them in the database at ``out``."""
    start = time.perf_counter()
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise FileFormatError("no such file", path=str(p), reason="file_error")
    lib = Library.create(out, dim=embedder.dim, encoder_hash=embedder.encoder_hash, layout=MOLECULES)
    opened_at = lib.table.version()  # older versions are compacted copies: pruned below
    ledger = FileLedger(out)
    report = ReadReport()
    result = BuildResult(path=Path(out))
    schema = molecule_schema()
    bar = tqdm(total=None, unit=" molecules", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    try:
        for path in paths:
            report.files += 1
            sha = file_sha256(path)
            if sha in ledger:
                report.files_unchanged += 1
                continue
            kept_before, skipped_before = report.kept, report.n_skipped
            chunk: list[Row] = []

            def flush(chunk: list[Row], path: Path = path) -> None:
                rows, emb = _embed(embedder, chunk, on_invalid=on_invalid, report=report, where=str(path))
                table = pa.Table.from_pylist([{c: r.get(c) for c in _COLUMNS} for r in rows], schema=schema)
                n_new = lib.add(with_embeddings(table, emb))
                report.kept += len(rows)
                result.inserted += n_new
                result.duplicates += len(rows) - n_new
                bar.update(len(chunk))

            for i, row in enumerate(read_structures(path)):
                report.spectra_read += 1
                try:
                    chunk.append(complete(row, where=str(path), record=f"{i + 1} ({row.get('name') or ''})"))
                except InvalidMoleculeError as exc:
                    if on_invalid == "error":
                        raise
                    report.reject(exc)
                if len(chunk) >= batch_size:
                    flush(chunk)
                    chunk = []
            if chunk:
                flush(chunk)
            ledger.record(sha, str(path), n_records=report.kept - kept_before,
                          n_skipped=report.n_skipped - skipped_before)
    finally:
        bar.close()
    if result.inserted:
        lib.table.optimize(keep_from=opened_at)
    manifest = lib.update_index(policy=policy, progress=progress)
    result.rows = lib.table.count_rows()
    result.read = {**report.to_dict(), "molecules_read": report.spectra_read}
    result.read.pop("spectra_read", None)
    result.read.pop("kept", None)
    result.stale_partitions = manifest.stale()
    result.seconds = time.perf_counter() - start
    return result
