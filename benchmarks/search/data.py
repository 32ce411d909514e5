"""Library and query sets of the search benchmark, built from the development data (val split).

* **library**: every ``train`` spectrum (80k), plus for the identity task the val spectra that are not
  queries.
* **identity queries**: for each val structure (InChIKey first block) and ion mode with >= 2 spectra,
  one spectrum drawn with a fixed seed; the structure's other spectra of that ion mode join the library.
* **analogue queries**: val spectra against the train library, which never holds their structure
  (scaffold-disjoint split).

Structures are compared by InChIKey first block; Tanimoto on RDKit fingerprints (2048 bits), as in the
model benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.models.rdkit_util import packed_fingerprint

ROOT = Path(__file__).resolve().parents[2]
SPECTRA = ROOT.parent / "shared" / "data" / "massbank" / "spectra.parquet"
COLUMNS = ["spectrum_id", "mz", "intensity", "precursor_mz", "charge", "ion_mode", "adduct", "smiles",
           "inchikey", "inchikey14", "formula", "name", "instrument_type", "split", "precursor_ppm_error",
           "legacy_blacklisted"]
#: instrument types of the "high-resolution clean" subset (substring match on ``instrument_type``)
HIRES_INSTRUMENTS = ("QTOF", "ITFT", "QFT", "FT", "Orbitrap", "TOF")


@dataclass
class SearchSets:
    """Tables of the benchmark; ``*_lib_rows`` index into ``spectra``."""

    spectra: pa.Table
    train_rows: npt.NDArray[np.int64]
    identity_queries: npt.NDArray[np.int64]
    identity_library: npt.NDArray[np.int64]
    analogue_queries: npt.NDArray[np.int64]
    hires_clean: npt.NDArray[np.bool_]


def load_sets(path: Path = SPECTRA, *, seed: int = 0) -> SearchSets:
    """Read the spectra and draw the query sets (deterministic for a seed)."""
    table = pq.read_table(path, columns=COLUMNS)
    table = table.filter(pc.and_(pc.is_valid(table.column("precursor_mz")),
                                 pc.greater(pc.list_value_length(table.column("mz")), 0)))
    split = np.asarray(table.column("split").to_pylist())
    train = np.flatnonzero(split == "train")
    val = np.flatnonzero(split == "val")
    keys = np.asarray(table.column("inchikey14").to_pylist(), dtype=object)
    modes = np.asarray(table.column("ion_mode").to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in val:
        groups.setdefault((keys[i], modes[i]), []).append(int(i))
    queries = []
    for key in sorted(groups):
        members = groups[key]
        if len(members) >= 2:
            queries.append(int(rng.choice(members)))
    q = np.asarray(sorted(queries), dtype=np.int64)
    others = np.setdiff1d(val, q)
    return SearchSets(spectra=table, train_rows=train, identity_queries=q,
                      identity_library=np.concatenate([train, others]), analogue_queries=val.astype(np.int64),
                      hires_clean=hires_clean_mask(table))


def hires_clean_mask(table: pa.Table, *, min_peaks: int = 3, max_ppm: float = 20.0) -> npt.NDArray[np.bool_]:
    """The "high-resolution clean" rows: instrument type containing one of :data:`HIRES_INSTRUMENTS`,
    >= ``min_peaks`` peaks, precursor within ``max_ppm`` of the adduct's m/z (``precursor_ppm_error``),
    not on MassBank's legacy blacklist."""
    instrument = np.asarray(table.column("instrument_type").fill_null("").to_pylist(), dtype=object)
    hires = np.asarray([any(k in str(t) for k in HIRES_INSTRUMENTS) for t in instrument], dtype=bool)
    n_peaks = pc.list_value_length(table.column("mz")).to_numpy(zero_copy_only=False)
    ppm = np.asarray(table.column("precursor_ppm_error").to_numpy(zero_copy_only=False), dtype=np.float64)
    black = np.asarray(table.column("legacy_blacklisted").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return hires & (n_peaks >= min_peaks) & (np.abs(np.nan_to_num(ppm, nan=np.inf)) <= max_ppm) & ~black


def fingerprints(smiles: list[str]) -> npt.NDArray[np.uint8]:
    """RDKit fingerprints (2048 bits), packed, one row per SMILES (zeros where it does not parse)."""
    out = np.zeros((len(smiles), 256), dtype=np.uint8)
    for i, smi in enumerate(smiles):
        out[i] = packed_fingerprint(smi, 2048)
    return out


_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint16)


def tanimoto(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], chunk: int = 262_144) -> npt.NDArray[np.float64]:
    """Row-wise Tanimoto of packed fingerprints (in chunks of rows: millions of pairs stay small)."""
    out = np.zeros(a.shape[0])
    for s in range(0, a.shape[0], chunk):
        x, y = a[s:s + chunk], b[s:s + chunk]
        inter = _POPCOUNT[x & y].sum(axis=1)
        union = _POPCOUNT[x | y].sum(axis=1)
        out[s:s + chunk] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out
