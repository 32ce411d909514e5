"""Structure -> spectra: the library spectra nearest to a molecule's embedding.

The molecule encoder puts a structure into the spectrum space, so a library (or a whole repository)
can be searched with a SMILES: which recorded spectra look like what this molecule would give? Optional
filters keep hits of one ion mode, or within a precursor window around the molecule's ``[M+H]+`` /
``[M-H]-`` (or given adducts) m/z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine.core.adducts import parse_adduct
from engine.core.errors import InvalidMoleculeError
from engine.core.records import Tolerance
from engine.core.schema import versioned_schema
from engine.models.rdkit_util import parse_smiles
from engine.queries.hits import SearchableLibrary, top_per_query
from engine.queries.references import References

STRUCTURE_SCHEMA = versioned_schema([
    "query_id", pa.field("query_smiles", pa.string(), nullable=False), "rank", "score", "library_id", "inchikey",
    "smiles", "name", "precursor_mz", "ion_mode", "adduct", "library_quality", pa.field("same_structure", pa.bool_()),
], {b"engine.search_mode": b"structure"})


@dataclass(frozen=True)
class StructureSettings:
    """Knobs of structure -> spectra search."""

    top_k: int = 10
    ion_mode: str | None = None
    adducts: tuple[str, ...] = ()
    precursor_tolerance_ppm: float = 10.0
    min_library_quality: float | None = None


def _inchikey_and_mass(smiles: Sequence[str]) -> tuple[list[str], list[float]]:
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcExactMolWt

    keys, masses = [], []
    for i, smi in enumerate(smiles):
        mol = parse_smiles(smi)
        if mol is None:
            raise InvalidMoleculeError("SMILES cannot be parsed", record=f"{i} ({smi!r})", reason="invalid_smiles")
        keys.append(Chem.MolToInchiKey(mol))
        masses.append(CalcExactMolWt(mol))
    return keys, masses


def spectra_for_structures(smiles: Sequence[str], library: SearchableLibrary, references: References,
                           model: object, *, query_ids: Sequence[str] | None = None,
                           settings: StructureSettings | None = None) -> pa.Table:
    """Nearest library spectra of each molecule (rows of :data:`STRUCTURE_SCHEMA`).

    With ``settings.adducts`` only spectra whose precursor matches one of the molecule's adduct m/z
    values (``precursor_tolerance_ppm``) are kept; the search then runs once per adduct and merges.
    """
    settings = settings or StructureSettings()
    smiles = list(smiles)
    ids = list(query_ids) if query_ids is not None else smiles
    if not smiles:
        return STRUCTURE_SCHEMA.empty_table()
    keys, masses = _inchikey_and_mass(smiles)
    emb = model.embed_smiles(smiles)  # type: ignore[attr-defined]
    parts = []
    decoys = references.decoy_rows()  # decoys are never results
    if settings.adducts:
        for name in settings.adducts:
            adduct = parse_adduct(name)
            mode = "positive" if adduct.charge > 0 else "negative"
            if settings.ion_mode is not None and settings.ion_mode != mode:
                continue
            mz = np.asarray([adduct.mz_from_neutral(m) for m in masses])
            parts.append(library.search(emb, top_k=settings.top_k, mass=mz,
                                        tolerance=Tolerance(settings.precursor_tolerance_ppm, "ppm"),
                                        ion_mode=mode, min_quality=settings.min_library_quality,
                                        exclude_rows=decoys))
    else:
        parts.append(library.search(emb, top_k=settings.top_k, ion_mode=settings.ion_mode,
                                    min_quality=settings.min_library_quality, exclude_rows=decoys))
    hits = pa.concat_tables(parts) if parts else None
    if hits is None or hits.num_rows == 0:
        return STRUCTURE_SCHEMA.empty_table()
    qi = hits.column("query_index").to_numpy().astype(np.int64)
    rows = hits.column("row_id").to_numpy().astype(np.int64)
    score = hits.column("score").to_numpy().astype(np.float64)
    keep, rank = top_per_query(qi, score, settings.top_k)
    meta = references.meta(rows[keep])
    n = len(keep)

    def col(name: str, typ: pa.DataType) -> pa.Array | pa.ChunkedArray:
        return meta.column(name).cast(typ) if name in meta.column_names else pa.nulls(n, typ)  # type: ignore[call-overload]

    lib_keys = col("inchikey", pa.string()).to_pylist()
    same = [k is not None and k[:14] == keys[q][:14] for k, q in zip(lib_keys, qi[keep], strict=True)]
    return pa.table({
        "query_id": pa.array([ids[q] for q in qi[keep]], pa.string()),
        "query_smiles": pa.array([smiles[q] for q in qi[keep]], pa.string()),
        "rank": pa.array(rank, pa.int32()),
        "score": pa.array(score[keep].astype(np.float32)),
        "library_id": col("spectrum_id", pa.string()),
        "inchikey": col("inchikey", pa.string()),
        "smiles": col("smiles", pa.string()),
        "name": col("name", pa.string()),
        "precursor_mz": col("precursor_mz", pa.float64()),
        "ion_mode": col("ion_mode", pa.string()),
        "adduct": col("adduct", pa.string()),
        "library_quality": col("quality", pa.float32()),
        "same_structure": pa.array(same, pa.bool_()),
    }, schema=STRUCTURE_SCHEMA)
