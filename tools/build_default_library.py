"""Build the bundled default spectral library ``engine/data/library`` from MassBank.

Selection: records whose licence allows redistribution (CC0, CC BY, CC BY-SA, dl-de/by-2-0), from
high-resolution instruments (TOF / FT), with >= 5 peaks and a precursor within 20 ppm of the adduct's
theoretical m/z; at most two spectra per (structure, ion mode), the two with the most peaks at
different collision energies. Every record keeps its MassBank accession, licence, copyright and
contributor (``metadata_json``), and ``engine/data/library/ATTRIBUTION.md`` lists them by contributor.

Usage (reads ``../shared/data``, which the product itself never does)::

    python tools/build_default_library.py [--data ../shared/data] [--per-structure 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LICENCES = ("CC0", "CC BY", "CC BY-SA", "dl-de/by-2-0")


def select(data: Path, per_structure: int) -> list[dict[str, object]]:
    table = pq.read_table(data / "massbank" / "spectra.parquet")
    rows = [r for r in table.to_pylist()
            if r["license"] in LICENCES and any(k in (r["instrument_type"] or "") for k in ("TOF", "FT"))
            and len(r["mz"]) >= 5 and (r["precursor_ppm_error"] is None or abs(r["precursor_ppm_error"]) <= 20)
            and not r["legacy_blacklisted"]]
    rows.sort(key=lambda r: (r["inchikey14"], r["ion_mode"], -len(r["mz"]), r["spectrum_id"]))
    chosen: list[dict[str, object]] = []
    seen: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        key = (r["inchikey14"], r["ion_mode"])
        energies = seen.setdefault(key, set())
        if len(energies) >= per_structure or str(r["collision_energy"]) in energies:
            continue
        energies.add(str(r["collision_energy"]))
        chosen.append(r)
    return chosen


def _seconds(text: object) -> float | None:
    """MassBank retention time text ('7.965 min', '420 sec', '12.1') in seconds; minutes when no unit."""
    import re

    m = re.match(r"^\s*([0-9.]+)\s*(s|sec|seconds?|min|minutes?)?", str(text or ""), re.I)
    if m is None:
        return None
    value = float(m.group(1))
    return value if (m.group(2) or "min").lower().startswith("s") else value * 60.0


def write_mgf(rows: list[dict[str, object]], path: Path) -> None:
    from engine.core.records import Spectrum
    from engine.io.writers.mgf import write_mgf as write

    spectra = [Spectrum(
        spectrum_id=str(r["spectrum_id"]), mz=np.asarray(r["mz"], np.float64),
        intensity=np.asarray(r["intensity"], np.float32), precursor_mz=float(r["precursor_mz"]),  # type: ignore[arg-type]
        charge=r["charge"], ion_mode=r["ion_mode"], adduct=r["adduct"], name=r["name"],  # type: ignore[arg-type]
        smiles=r["smiles"], inchikey=r["inchikey"], formula=r["formula"],  # type: ignore[arg-type]
        retention_time=_seconds(r["retention_time"]), collision_energy=r["collision_energy"],  # type: ignore[arg-type]
        metadata={"ACCESSION": str(r["spectrum_id"]), "LICENSE": str(r["license"]),
                  "COPYRIGHT": str(r["copyright"] or ""), "CONTRIBUTOR": str(r["contributor"] or ""),
                  "INSTRUMENT_TYPE": str(r["instrument_type"] or "")},
    ) for r in rows]
    write(spectra, path)


def compact(library: Path, rows_per_file: int = 3000) -> None:
    """Rewrite the table in files of at most ``rows_per_file`` rows, without old versions (repo-sized files)."""
    import lance

    from indexes.library import Library

    uri = str(library / "spectra.lance")
    data = lance.dataset(uri)
    table = data.to_table()
    shutil.rmtree(uri)
    lance.write_dataset(table, uri, schema=data.schema, max_rows_per_file=rows_per_file)
    Library.open(library).table.ensure_key_index()


def attribution(rows: list[dict[str, object]], path: Path) -> None:
    by = Counter((str(r["contributor"]), str(r["copyright"]), str(r["license"])) for r in rows)
    lines = ["# Attribution of the bundled default library", "",
             f"{len(rows)} MassBank records (MassBank/MassBank-data release 2025.05.1), selected by "
             "`tools/build_default_library.py`. Each record keeps its accession, licence, copyright and "
             "contributor in the library table (`metadata_json`). Records by contributor:", "",
             "| contributor | copyright | licence | records |", "|---|---|---|---|"]
    lines += [f"| {c} | {cp} | {lic} | {n} |" for (c, cp, lic), n in sorted(by.items(), key=lambda x: -x[1])]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--per-structure", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "engine" / "data" / "library")
    args = ap.parse_args()
    rows = select(args.data, args.per_structure)
    work = ROOT / "runs" / "default_library"
    work.mkdir(parents=True, exist_ok=True)
    mgf = work / "massbank_library.mgf"
    write_mgf(rows, mgf)
    readme = args.out / "README.md"
    readme_text = readme.read_text() if readme.exists() else None
    shutil.rmtree(args.out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "engine", "library", "build", str(mgf), "--out", str(args.out)],
                   check=True, cwd=ROOT)
    compact(args.out)
    attribution(rows, args.out / "ATTRIBUTION.md")
    if readme_text is not None:
        readme.write_text(readme_text)
    from engine.queries.references import References
    from indexes.library import Library

    References(Library.open(args.out), preload=True).prepare()  # ships structure_fingerprints.npz
    print(f"{len(rows)} spectra -> {args.out}")


if __name__ == "__main__":
    main()
