"""In-silico fragmentation (MetFrag-style): how much of a spectrum a candidate structure's fragments explain.

A candidate's fragments are the connected pieces left after up to ``max_steps`` cleavage steps, a step
being one bond outside rings or two bonds of one ring (a ring opens only when cut twice). Each fragment
keeps its atoms' implicit hydrogens; its ions are ``fragment mass + shift * H + charge carrier`` (proton
or, for ``[M+Na]+`` precursors, sodium; a deprotonation in negative mode; the bare electron loss for
molecules with a charged atom) for hydrogen shifts ``-2..+2`` (MetFrag allows the same rearrangements).

The score of a spectrum against a candidate is the share of the spectrum's square-root intensity that
fragment ions explain within the m/z tolerance, each peak counted by its best explanation:
``step_decay ** (steps - 1) * shift_decay ** |shift|`` (1 for a one-step fragment without hydrogen
rearrangement). Same-formula candidates have the same atoms, so the score compares how their bond
graphs could have produced the observed fragments, which the spectrum embedding sees only indirectly.

Fragmentation is vectorised over all cleavage sets of a molecule at once (connected components by label
propagation with pointer jumping in NumPy), a few milliseconds per molecule; :class:`FragmentScorer`
keeps each SMILES' fragment masses for reuse across queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from engine.encoders.spectrum import FlatPeaks

PROTON = 1.007276466812
HYDROGEN = 1.00782503207
ELECTRON = 0.00054857990946
SODIUM_ION = 22.989769282 - ELECTRON

#: At most this many cleavage sets per molecule; beyond it, the second step only cuts bonds outside rings.
MAX_CLEAVAGE_SETS = 6_000


@dataclass(frozen=True)
class FragmentSettings:
    """Fragmentation depth, m/z tolerance and the weights of multi-step and rearranged explanations."""

    max_steps: int = 2
    tolerance_ppm: float = 10.0
    tolerance_da: float = 0.005
    step_decay: float = 0.5
    shift_decay: float = 0.5
    max_shift: int = 2
    #: peak weight = (preprocessed, square-root) intensity * m/z ** mz_power: heavier fragments say more
    #: about a structure than small ones any candidate of the formula explains
    mz_power: float = 1.0
    #: peaks above ``precursor m/z - precursor_margin_da`` (the precursor and its isotopes) are left out:
    #: every candidate of the formula explains them
    precursor_margin_da: float = 1.5

    def __post_init__(self) -> None:
        if self.max_steps not in (1, 2):
            raise ValueError(f"max_steps must be 1 or 2, got {self.max_steps}")
        if self.tolerance_ppm < 0 or self.tolerance_da < 0:
            raise ValueError("tolerances must be >= 0")
        if not (0 <= self.step_decay <= 1 and 0 <= self.shift_decay <= 1):
            raise ValueError("step_decay and shift_decay must lie in 0..1")


@dataclass(frozen=True)
class Fragments:
    """Distinct fragment masses of one molecule (neutral, implicit hydrogens kept) and the fewest cleavage
    steps that give each; ``charged`` when the molecule has an atom with a formal charge."""

    masses: npt.NDArray[np.float64]
    steps: npt.NDArray[np.int8]
    charged: bool


def _atom_table(mol: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[int], list[list[int]], bool]:
    """Atom masses with their hydrogens, bond end points, ring-bond flags and the SSSR bond rings."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    masses = np.array([table.GetMostCommonIsotopeMass(a.GetAtomicNum()) + a.GetTotalNumHs() * HYDROGEN
                       for a in mol.GetAtoms()], dtype=np.float64)
    ends = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=np.int64)
    ring_bonds = [int(b.IsInRing()) for b in mol.GetBonds()]
    rings = [list(r) for r in mol.GetRingInfo().BondRings()]
    charged = any(a.GetFormalCharge() != 0 for a in mol.GetAtoms())
    return masses, ends.reshape(-1, 2), ring_bonds, rings, charged


def _cleavage_sets(n_bonds: int, ring_bonds: list[int], rings: list[list[int]], max_steps: int
                   ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int8]]:
    """Boolean (sets x bonds) cut masks and the steps of each: single non-ring bonds and same-ring bond
    pairs are one step; two steps combine two of them."""
    units: list[tuple[int, ...]] = [(b,) for b in range(n_bonds) if not ring_bonds[b]]
    n_chain = len(units)
    seen: set[tuple[int, int]] = set()
    for ring in rings:
        for pair in combinations(sorted(ring), 2):
            if pair not in seen:
                seen.add(pair)
                units.append(pair)
    unit_mask = np.zeros((len(units), n_bonds), dtype=bool)
    for u, bonds in enumerate(units):
        unit_mask[u, list(bonds)] = True
    masks = [unit_mask]
    steps = [np.ones(len(units), np.int8)]
    if max_steps >= 2 and len(units) > 1:
        a, b = np.triu_indices(len(units), k=1)
        if a.shape[0] > MAX_CLEAVAGE_SETS:   # large ring systems: the second cut must be a chain bond
            chain = a < n_chain              # (chain units come first, so a < b puts one there)
            a, b = a[chain][:MAX_CLEAVAGE_SETS], b[chain][:MAX_CLEAVAGE_SETS]
        masks.append(unit_mask[a] | unit_mask[b])
        steps.append(np.full(a.shape[0], 2, np.int8))
    return np.vstack(masks), np.concatenate(steps)


def _components(n_atoms: int, ends: npt.NDArray[np.int64], cut: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Component label (smallest atom index) of every atom for every cut mask, by min-label propagation."""
    n_sets = cut.shape[0]
    src = np.concatenate([ends[:, 0], ends[:, 1]])
    dst = np.concatenate([ends[:, 1], ends[:, 0]])
    present = ~np.concatenate([cut, cut], axis=1)
    order = np.argsort(src, kind="stable")
    src, dst, present = src[order], dst[order], present[:, order]
    has_edge = np.zeros(n_atoms, bool)
    has_edge[src] = True
    starts = np.searchsorted(src, np.arange(n_atoms))[has_edge]
    labels = np.broadcast_to(np.arange(n_atoms), (n_sets, n_atoms)).copy()
    big = n_atoms
    rows = np.arange(n_sets)[:, None]
    for _ in range(n_atoms):
        via = np.where(present, labels[:, dst], big)
        best = labels.copy()
        best[:, has_edge] = np.minimum(labels[:, has_edge], np.minimum.reduceat(via, starts, axis=1))
        best = best[rows, best]  # pointer jumping: take the label's own label
        if np.array_equal(best, labels):
            break
        labels = best
    return labels


def fragment_molecule(mol: Any, settings: FragmentSettings) -> Fragments:
    """All distinct fragment masses of an RDKit molecule within ``settings.max_steps`` cleavage steps
    (the intact molecule included, at 0 steps)."""
    masses, ends, ring_bonds, rings, charged = _atom_table(mol)
    n_atoms = masses.shape[0]
    total = float(masses.sum())
    if n_atoms < 2 or ends.shape[0] == 0:
        return Fragments(np.array([total]), np.zeros(1, np.int8), charged)
    cut, steps = _cleavage_sets(ends.shape[0], ring_bonds, rings, settings.max_steps)
    labels = _components(n_atoms, ends, cut)
    key = (np.arange(cut.shape[0])[:, None] * n_atoms + labels).ravel()
    comp_mass = np.bincount(key, weights=np.tile(masses, cut.shape[0]), minlength=cut.shape[0] * n_atoms)
    comp_set = np.repeat(np.arange(cut.shape[0]), n_atoms)
    real = (comp_mass > 0) & (comp_mass < total - 1e-6)
    frag_mass = np.concatenate([[total], comp_mass[real]])
    frag_steps = np.concatenate([[0], steps[comp_set[real]]]).astype(np.int8)
    rounded = np.round(frag_mass, 5)
    order = np.lexsort((frag_steps, rounded))
    rounded, frag_mass, frag_steps = rounded[order], frag_mass[order], frag_steps[order]
    first = np.concatenate([[True], rounded[1:] != rounded[:-1]])
    return Fragments(frag_mass[first], frag_steps[first], charged)


def fragment_smiles(smiles: str, settings: FragmentSettings) -> Fragments | None:
    """Fragments of a SMILES; None when RDKit cannot parse it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return None if mol is None else fragment_molecule(mol, settings)


def ion_table(fragments: Fragments, ion_mode: str, adduct: str | None, settings: FragmentSettings
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sorted fragment ion m/z values and the weight of each as an explanation."""
    if ion_mode == "negative":
        carriers = [-PROTON]
        if fragments.charged:
            carriers.append(ELECTRON)
    else:
        carriers = [PROTON]
        if adduct and "Na" in adduct:
            carriers.append(SODIUM_ION)
        if fragments.charged:
            carriers.append(-ELECTRON)
    shifts = np.arange(-settings.max_shift, settings.max_shift + 1)
    step_w = settings.step_decay ** np.maximum(fragments.steps.astype(np.float64) - 1, 0)
    mz = (fragments.masses[:, None, None] + shifts[None, :, None] * HYDROGEN
          + np.asarray(carriers)[None, None, :])
    weight = step_w[:, None, None] * (settings.shift_decay ** np.abs(shifts))[None, :, None] * np.ones_like(mz)
    mz, weight = mz.ravel(), weight.ravel()
    order = np.argsort(mz, kind="stable")
    return mz[order], weight[order]


def explained_share(peak_mz: npt.NDArray[np.float64], peak_weight: npt.NDArray[np.float64],
                    ion_mz: npt.NDArray[np.float64], ion_weight: npt.NDArray[np.float64],
                    settings: FragmentSettings) -> float:
    """Share of ``peak_weight`` explained by the ions, each peak by its best-weighted ion within tolerance."""
    total = float(peak_weight.sum())
    if total <= 0 or ion_mz.shape[0] == 0:
        return 0.0
    tol = np.maximum(peak_mz * settings.tolerance_ppm * 1e-6, settings.tolerance_da)
    lo = np.searchsorted(ion_mz, peak_mz - tol, side="left")
    hi = np.searchsorted(ion_mz, peak_mz + tol, side="right")
    best = np.zeros(peak_mz.shape[0])
    width = int((hi - lo).max())
    for j in range(width):
        idx = lo + j
        ok = idx < hi
        if not ok.any():
            break
        best = np.maximum(best, np.where(ok, ion_weight[np.minimum(idx, ion_mz.shape[0] - 1)], 0.0))
    return float((best * peak_weight).sum() / total)


#: Score added per unit of explained share when fragment scores join the embedding cosine in candidate
#: ranking (chosen on the train split's calibration fold; see benchmarks/model).
DEFAULT_WEIGHT = 0.75


@dataclass
class FragmentScorer:
    """Explained-share scores of (spectrum, candidate) pairs; each SMILES is fragmented once per scorer.

    ``weight`` is what candidate ranking multiplies the share by before adding it to the cosine.
    """

    settings: FragmentSettings = field(default_factory=FragmentSettings)
    weight: float = DEFAULT_WEIGHT
    _fragments: dict[str, Fragments | None] = field(default_factory=dict, repr=False)
    _ions: dict[tuple[str, str, bool], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(
        default_factory=dict, repr=False)

    def fragments(self, smiles: str) -> Fragments | None:
        """Fragments of ``smiles`` (None when it does not parse), computed once."""
        if smiles not in self._fragments:
            self._fragments[smiles] = fragment_smiles(smiles, self.settings)
        return self._fragments[smiles]

    def _ion_table(self, smiles: str, ion_mode: str, sodium: bool
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        key = (smiles, ion_mode, sodium)
        if key not in self._ions:
            frags = self.fragments(smiles)
            if frags is None:
                return None
            self._ions[key] = ion_table(frags, ion_mode, "[M+Na]+" if sodium else None, self.settings)
        return self._ions[key]

    def peak_weights(self, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.floating[Any]],
                     precursor_mz: float | None) -> npt.NDArray[np.float64]:
        """Weight of each peak in the explained share (zero for the precursor region)."""
        w = np.clip(np.asarray(intensity, dtype=np.float64), 0, None) * mz ** self.settings.mz_power
        if precursor_mz is not None and np.isfinite(precursor_mz):
            w = np.where(mz < precursor_mz - self.settings.precursor_margin_da, w, 0.0)
        return w

    def score(self, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.floating[Any]],
              precursor_mz: float | None, ion_mode: str | None, adduct: str | None, smiles: str) -> float:
        """Share of one spectrum's peak weight that ``smiles``' fragment ions explain (NaN when the SMILES
        does not parse, 0 when no peak is left to explain). Pass preprocessed peaks (square-root
        intensities, as the embedding sees them)."""
        table = self._ion_table(smiles, ion_mode or "positive", bool(adduct and "Na" in adduct))
        if table is None:
            return float("nan")
        return explained_share(mz, self.peak_weights(mz, intensity, precursor_mz), table[0], table[1],
                               self.settings)

    def score_pairs(self, peaks: FlatPeaks, ion_modes: Sequence[str | None], adducts: Sequence[str | None],
                    query: npt.NDArray[np.int64], smiles: Sequence[str]) -> npt.NDArray[np.float64]:
        """:meth:`score` of every pair (spectrum ``query[k]`` of ``peaks``, candidate ``smiles[k]``)."""
        starts = np.searchsorted(peaks.seg, np.arange(peaks.n + 1))
        out = np.empty(len(smiles), dtype=np.float64)
        for k, (q, smi) in enumerate(zip(query.tolist(), smiles, strict=True)):
            a, b = starts[q], starts[q + 1]
            out[k] = self.score(peaks.mz[a:b], peaks.intensity[a:b], float(peaks.precursor_mz[q]),
                                ion_modes[q], adducts[q], smi)
        return out
