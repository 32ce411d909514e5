"""Molecule files: a SMILES list (``SMILES [id]`` per line: ``.smi``, ``.smiles``, ``.txt``), CSV / TSV, Parquet
or SDF, read in chunks as Arrow tables. One reader serves molecule embedding and molecule-database
building; completing a structure (InChIKey, formula, mass) is left to the callers. (RDKit reads SDF, so
the reader sits in the models layer, not in io.)

Every chunk holds the file's own columns, with its SMILES column (``smiles``, ``canonical_smiles`` or
``isomeric_smiles``, any case) named ``smiles``; SMILES lists and SDF give ``smiles`` and ``id`` (the
line's second field, the SDF title). ``_record`` names each row's place in the file for messages
(``line N``, ``row N``, ``record N``); an SDF record RDKit cannot read has a null ``smiles``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.errors import FileFormatError
from engine.models.rdkit_util import silence_rdkit

SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
STRUCTURE_SUFFIXES = (*SMILES_SUFFIXES, *CSV_SUFFIXES, *PARQUET_SUFFIXES, ".sdf")
#: Column names taken as the SMILES column (compared in lower case, first found wins).
SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles")
RECORD = "_record"
CHUNK = 8192


def structure_chunks(path: str | Path, *, chunk_rows: int = CHUNK) -> Iterator[pa.Table]:
    """The structures of ``path`` as tables of at most ``chunk_rows`` rows (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STRUCTURE_SUFFIXES:
        raise FileFormatError(f"unsupported molecule file type {suffix or '(none)'!r}; supported: "
                              f"{', '.join(STRUCTURE_SUFFIXES)}", path=str(path), reason="file_error")
    if not path.is_file():
        raise FileFormatError("molecule file not found", path=str(path), reason="file_error")
    if suffix in PARQUET_SUFFIXES:
        yield from _parquet_chunks(path, chunk_rows)
        return
    rows = _smiles_lines(path) if suffix in SMILES_SUFFIXES else _csv_rows(path) if suffix in CSV_SUFFIXES \
        else _sdf_rows(path)
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            yield _table(chunk)
            chunk = []
    if chunk:
        yield _table(chunk)


def smiles_column(names: list[str], path: Path) -> str:
    """The name of the SMILES column among ``names``; FileFormatError when there is none."""
    lower = {n.strip().lower(): n for n in names}
    for alias in SMILES_COLUMNS:
        if alias in lower:
            return lower[alias]
    raise FileFormatError(f"no 'smiles' column (columns: {', '.join(names)})", path=str(path), reason="file_error")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of text (every value a string or None) as a table of string columns."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({n: pa.array([row.get(n) for row in rows], pa.string()) for n in names})


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    pf = pq.ParquetFile(path)
    column = smiles_column(pf.schema_arrow.names, path)
    start = 0
    for batch in pf.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        if column != "smiles":
            table = table.rename_columns(["smiles" if n == column else n for n in table.column_names])
        records = pa.array([f"row {i + 1}" for i in range(start, start + table.num_rows)], pa.string())
        start += table.num_rows
        yield table.append_column(RECORD, records)


def _smiles_lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = True
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(None, 1)
            if first and parts[0].lower() == "smiles":   # a header line
                first = False
                continue
            first = False
            yield {"smiles": parts[0], "id": parts[1].strip() if len(parts) > 1 else None, RECORD: f"line {line_no}"}


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        column = smiles_column(list(reader.fieldnames or []), path)
        for line_no, row in enumerate(reader, start=2):
            out = {("smiles" if k == column else k): v for k, v in row.items() if k is not None}
            out[RECORD] = f"line {line_no}"
            yield out


def _sdf_rows(path: Path) -> Iterator[dict[str, Any]]:
    from rdkit import Chem

    silence_rdkit()
    with open(path, "rb") as fh:
        for index, mol in enumerate(Chem.ForwardSDMolSupplier(fh, sanitize=True)):
            record = f"record {index + 1}"
            if mol is None:
                yield {"smiles": None, "id": None, RECORD: record}
                continue
            title = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
            yield {"smiles": Chem.MolToSmiles(mol), "id": title or None, RECORD: record}
