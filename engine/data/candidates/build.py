"""Rebuild ``molecules.parquet`` from the MassBank development data (not run at product run time).

Usage: ``python -m engine.data.candidates.build ../shared/data/massbank/spectra.parquet``.
Keeps the structures of records whose licence allows redistribution and carries their attribution.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.models.rdkit_util import parse_smiles

REDISTRIBUTABLE = ("CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0")
OUT = Path(__file__).resolve().parent / "molecules.parquet"


def build(spectra_path: str, out: Path = OUT) -> pa.Table:
    """Write one row per InChIKey with SMILES, formula, mass, a name and the MassBank attribution."""
    cols = ["spectrum_id", "smiles", "inchikey", "formula", "exact_mass", "name", "license", "copyright",
            "contributor"]
    t = pq.read_table(spectra_path, columns=cols)
    t = t.filter(pc.is_in(t.column("license"), value_set=pa.array(REDISTRIBUTABLE)))
    t = t.filter(pc.and_(pc.is_valid(t.column("inchikey")), pc.is_valid(t.column("smiles"))))
    t = t.sort_by([("inchikey", "ascending"), ("spectrum_id", "ascending")])
    grouped = t.group_by("inchikey", use_threads=False).aggregate([
        ("smiles", "first"), ("formula", "first"), ("exact_mass", "first"), ("name", "first"),
        ("spectrum_id", "list"), ("license", "distinct"), ("copyright", "distinct"), ("contributor", "distinct"),
    ])
    from rdkit.Chem.rdMolDescriptors import CalcExactMolWt

    masses = []
    for smi, fallback in zip(grouped.column("smiles_first").to_pylist(),
                             grouped.column("exact_mass_first").to_pylist(), strict=True):
        mol = parse_smiles(smi)
        masses.append(CalcExactMolWt(mol) if mol is not None else fallback)
    table = pa.table({
        "inchikey": grouped.column("inchikey"),
        "smiles": grouped.column("smiles_first"),
        "formula": grouped.column("formula_first"),
        "monoisotopic_mass": pa.array(masses, pa.float64()),
        "name": grouped.column("name_first"),
        "massbank_accessions": grouped.column("spectrum_id_list"),
        "licenses": grouped.column("license_distinct"),
        "copyright": grouped.column("copyright_distinct"),
        "contributors": grouped.column("contributor_distinct"),
    }).sort_by("monoisotopic_mass")
    pq.write_table(table, out, compression="zstd", compression_level=19)
    return table


if __name__ == "__main__":
    tab = build(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/massbank/spectra.parquet")
    print(f"{tab.num_rows} structures -> {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
