"""Decoy spectra for target-decoy FDR: conditional peak sampling (Scheubert et al., Nat Commun 2017).

A decoy has its target's precursor m/z, ion mode, charge and adduct, the same number of fragment peaks
and the same intensities (shuffled), but fragment m/z values drawn from *other* real spectra: the
"spectrum-based" method of Passatutto (conditional peak sampling). The first fragment is drawn from the
pool of real fragment peaks below the precursor; each next one is drawn from a random pool spectrum
that contains (within ``bin_da``) a fragment already in the decoy, so fragments that co-occur in real
spectra co-occur in decoys, and decoys look like spectra of real compounds of that mass without being
any one of them. The target's precursor peak, when present, is kept.

The pool (:class:`FragmentPool`) is a fixed set of real spectra per ion mode shipped with the engine
(``engine/data/decoys``), so a decoy depends only on its target and the pool; the random generator is
seeded from the target's spectrum id, so a decoy is the same on every build and every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.core.records import Spectrum

#: Decoy ids are the target's id behind this prefix.
DECOY_PREFIX = "decoy:"
#: Fragments within this many Da of the precursor (or above it) count as the precursor peak.
PRECURSOR_WINDOW_DA = 0.5
_MAX_TRIES = 20


def decoy_id(spectrum_id: str) -> str:
    """The id of the decoy of ``spectrum_id``."""
    return DECOY_PREFIX + spectrum_id


def seed_of(spectrum_id: str) -> int:
    """A 64-bit seed derived from a spectrum id (stable across runs, machines and Python versions)."""
    return int.from_bytes(hashlib.sha256(spectrum_id.encode()).digest()[:8], "little")


@dataclass
class PoolMode:
    """The pool spectra of one ion mode: fragment m/z in CSR form plus the inverted bin -> spectra index."""

    offsets: npt.NDArray[np.int64]
    mz: npt.NDArray[np.float64]
    bin_da: float

    def __post_init__(self) -> None:
        bins = np.floor(self.mz / self.bin_da).astype(np.int64)
        owner = np.repeat(np.arange(self.offsets.shape[0] - 1), np.diff(self.offsets))
        order = np.lexsort((owner, bins))
        self._bins_sorted = bins[order]
        self._owner_sorted = owner[order]

    @property
    def n_spectra(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def spectra_with(self, mz: float) -> npt.NDArray[np.int64]:
        """Pool spectra holding a fragment in the bin of ``mz`` or a neighbouring bin."""
        b = int(np.floor(mz / self.bin_da))
        lo = np.searchsorted(self._bins_sorted, b - 1, side="left")
        hi = np.searchsorted(self._bins_sorted, b + 1, side="right")
        return self._owner_sorted[lo:hi]

    def fragments(self, spectrum: int) -> npt.NDArray[np.float64]:
        return self.mz[self.offsets[spectrum]:self.offsets[spectrum + 1]]


class FragmentPool:
    """Real fragment peaks by ion mode, the material decoys are made of."""

    def __init__(self, modes: dict[str, PoolMode], bin_da: float = 0.01) -> None:
        self.modes = modes
        self.bin_da = bin_da

    @classmethod
    def from_spectra(cls, spectra: Sequence[Spectrum], *, max_peaks: int = 30, bin_da: float = 0.01
                     ) -> FragmentPool:
        """A pool from real spectra (their ``max_peaks`` most intense fragments below the precursor)."""
        per_mode: dict[str, tuple[list[int], list[npt.NDArray[np.float64]]]] = {}
        for s in spectra:
            if s.ion_mode is None or s.precursor_mz is None:
                continue
            keep = s.mz < s.precursor_mz - PRECURSOR_WINDOW_DA
            mz, inten = s.mz[keep], s.intensity[keep]
            if mz.shape[0] < 2:
                continue
            top = np.sort(mz[np.argsort(-inten, kind="stable")[:max_peaks]])
            lengths, chunks = per_mode.setdefault(s.ion_mode, ([], []))
            lengths.append(top.shape[0])
            chunks.append(top)
        modes = {m: PoolMode(np.r_[0, np.cumsum(lengths)].astype(np.int64), np.concatenate(chunks), bin_da)
                 for m, (lengths, chunks) in per_mode.items()}
        return cls(modes, bin_da)

    def save(self, path: str | Path) -> None:
        arrays: dict[str, npt.NDArray[np.generic]] = {"bin_da": np.asarray(self.bin_da)}
        for m, pm in self.modes.items():
            arrays[f"{m}.offsets"] = pm.offsets.astype(np.int32)
            arrays[f"{m}.mz"] = pm.mz.astype(np.float32)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> FragmentPool:
        with np.load(path) as data:
            bin_da = float(data["bin_da"])
            names = {k.split(".")[0] for k in data.files if k.endswith(".offsets")}
            modes = {m: PoolMode(data[f"{m}.offsets"].astype(np.int64), data[f"{m}.mz"].astype(np.float64), bin_da)
                     for m in sorted(names)}
        return cls(modes, bin_da)

    def decoy(self, target: Spectrum) -> Spectrum | None:
        """The decoy of ``target`` (None when it has no precursor, no ion mode the pool knows, or no peaks)."""
        if target.precursor_mz is None or target.ion_mode not in self.modes or target.mz.shape[0] == 0:
            return None
        pool = self.modes[target.ion_mode]
        prec = float(target.precursor_mz)
        rng = np.random.default_rng(seed_of(target.spectrum_id))
        is_frag = target.mz < prec - PRECURSOR_WINDOW_DA
        if not is_frag.any():  # precursor peaks only: a copy would tie with its target; sample them all
            is_frag = np.ones(target.mz.shape[0], dtype=bool)
        n = int(is_frag.sum())
        frags = _sample_fragments(pool, prec - PRECURSOR_WINDOW_DA, n, rng) if n else np.zeros(0)
        inten = target.intensity[is_frag][rng.permutation(n)][:frags.shape[0]]
        mz = np.concatenate([frags, target.mz[~is_frag]])
        intensity = np.concatenate([inten, target.intensity[~is_frag]]).astype(np.float32)
        order = np.argsort(mz, kind="stable")
        return replace(target, spectrum_id=decoy_id(target.spectrum_id), mz=mz[order].astype(np.float64),
                       intensity=intensity[order], name=None, smiles=None, inchi=None, inchikey=None,
                       formula=None, native_id=None, scan=None,
                       metadata={"decoy_of": target.spectrum_id, "decoy_method": "conditional_peak_sampling"})

    def decoys(self, targets: Sequence[Spectrum]) -> list[Spectrum]:
        """Decoys of every target that can have one, in order."""
        return [d for d in (self.decoy(t) for t in targets) if d is not None]


def _sample_fragments(pool: PoolMode, max_mz: float, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """``n`` distinct (by bin) fragment m/z values below ``max_mz`` by conditional peak sampling."""
    chosen: list[float] = []
    bins: set[int] = set()

    def add_from(spectrum: int) -> bool:
        frags = pool.fragments(spectrum)
        frags = frags[frags < max_mz]
        if frags.shape[0] == 0:
            return False
        fresh = [f for f in frags.tolist() if int(np.floor(f / pool.bin_da)) not in bins]
        if not fresh:
            return False
        pick = float(fresh[int(rng.integers(len(fresh)))])
        chosen.append(pick)
        bins.add(int(np.floor(pick / pool.bin_da)))
        return True

    misses = 0
    while len(chosen) < n and misses < _MAX_TRIES * max(n, 1):
        if chosen:
            anchor = chosen[int(rng.integers(len(chosen)))]
            holders = pool.spectra_with(anchor)
            if holders.shape[0] and add_from(int(holders[int(rng.integers(holders.shape[0]))])):
                continue
        if not add_from(int(rng.integers(pool.n_spectra))):  # a fresh start anywhere in the pool
            misses += 1
    return np.sort(np.asarray(chosen, dtype=np.float64))
