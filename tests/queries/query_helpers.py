"""Helpers shared by the query tests (a module with a unique name, importable from the test files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.core.records import Spectrum


def table_to_spectra(table: pa.Table) -> list[Spectrum]:
    out = []
    for r in table.to_pylist():
        out.append(Spectrum(spectrum_id=r["spectrum_id"], mz=np.asarray(r["mz"], dtype=np.float64),
                            intensity=np.asarray(r["intensity"], dtype=np.float32),
                            precursor_mz=r["precursor_mz"], charge=r["charge"], ion_mode=r["ion_mode"],
                            adduct=r["adduct"], name=r["name"], smiles=r["smiles"], inchikey=r["inchikey"],
                            formula=r["formula"]))
    return out



def write_mgf(spectra: list[Spectrum], path: Path) -> Path:
    """A plain MGF file of ``spectra`` (for CLI tests)."""
    with open(path, "w") as fh:
        for s in spectra:
            fh.write(f"BEGIN IONS\nTITLE={s.spectrum_id}\nPEPMASS={s.precursor_mz}\nIONMODE={s.ion_mode}\n")
            for key, value in (("ADDUCT", s.adduct), ("NAME", s.name), ("SMILES", s.smiles),
                               ("INCHIKEY", s.inchikey), ("FORMULA", s.formula)):
                if value:
                    fh.write(f"{key}={value}\n")
            fh.writelines(f"{m} {i}\n" for m, i in zip(s.mz, s.intensity, strict=True))
            fh.write("END IONS\n\n")
    return path


def build_test_library(path: Path, spectra: list[Spectrum], embedder: object) -> object:
    """A library directory of ``spectra`` embedded by ``embedder`` (LanceDB table + index)."""
    from engine.core.schema import spectra_to_batch
    from indexes.library import Library, with_embeddings

    batch = spectra_to_batch(spectra)
    emb, quality = embedder.embed_spectra(batch)  # type: ignore[attr-defined]
    lib = Library.create(path, dim=embedder.dim, encoder_hash=embedder.encoder_hash)  # type: ignore[attr-defined]
    lib.add(with_embeddings(batch, emb, quality))
    lib.build_index()
    return Library.open(path)


def split_queries(spectra: list[Spectrum], every: int = 7) -> tuple[list[Spectrum], list[Spectrum]]:
    """(queries, library): every ``every``-th spectrum is a query."""
    return ([s for i, s in enumerate(spectra) if i % every == 0],
            [s for i, s in enumerate(spectra) if i % every != 0])
