"""In-silico fragmentation (MetFrag-style): how much of a spectrum a candidate structure's fragments explain.

A candidate's fragments are the connected pieces left after up to ``max_steps`` cleavage steps, a step
being one bond outside rings or two bonds of one ring (a ring opens only when cut twice). Each fragment
keeps its atoms' implicit hydrogens; its ions are ``fragment mass + shift * H + charge carrier`` (proton
or, for ``[M+Na]+`` precursors, sodium; a deprotonation in negative mode; the bare electron loss for
molecules with a net formal charge) for hydrogen shifts ``-2..+2`` (MetFrag allows the same
rearrangements). Each cleavage is weighted by the learned propensities of the bond types it cuts
(:class:`BondPropensities`, tempered by ``propensity_power``), or by ``step_decay ** (steps - 1)``
without them; hydrogen shifts by ``shift_decay ** |shift|``.

A (spectrum, candidate) pair gets three numbers (:class:`FragmentEvidence`): the *explained share*, the
share of the spectrum's peak weight (square-root intensity x m/z ** ``mz_power``, precursor region left
out) that fragment ions explain within the m/z tolerance, each peak by its best-weighted explanation;
the *predicted recall*, the share of the candidate's likely one-step fragments the spectrum shows; and
the number of distinct fragment masses. :class:`FragmentWeights` combine them into the score candidate
ranking adds to the cosine. Same-formula candidates have the same atoms, so the score compares how their
bond graphs could have produced the observed fragments, which the spectrum embedding sees only
indirectly.

Fragmentation enumerates all cleavage sets of a molecule at once and labels the pieces of each with a
compiled union-find (:func:`engine.queries.kernels.cut_piece_masses`; :func:`_components` is the NumPy
statement of the same, kept as the reference the tests compare against): well under a millisecond for
small molecules, a few for lipids and glycosides; :class:`FragmentScorer` keeps each SMILES' fragments
for reuse across queries. Scoring many (spectrum, candidate) pairs (:meth:`FragmentScorer.score_pairs`)
runs a compiled kernel over CSR-packed peaks and ion tables
(:func:`engine.queries.kernels.fragment_pair_evidence`, parallel over pairs); :func:`explained_share` and
:func:`predicted_recall_of` state the same computation for one pair and stay the reference.
:mod:`engine.queries.peak_annotation` gives the per-peak view (which fragment explains which peak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from engine.core.config import Settings, setting
from engine.core.peaks import Peaks, offsets_of
from engine.models.rdkit_util import parse_smiles

PROTON = 1.007276466812
HYDROGEN = 1.00782503207
ELECTRON = 0.00054857990946
SODIUM_ION = 22.989769282 - ELECTRON

#: Bond-cleavage propensities the scorer uses by default (tools/fit_fragment_bonds.py writes it).
DEFAULT_BOND_TABLE = Path(__file__).resolve().parents[1] / "data" / "calibration" / "fragment_bonds.json"

#: At most this many cleavage sets per molecule; beyond it, the second step only cuts bonds outside rings.
MAX_CLEAVAGE_SETS = 6_000


@dataclass(frozen=True)
class FragmentSettings(Settings):
    """Fragmentation depth, m/z tolerance and the weights of multi-step and rearranged explanations."""

    max_steps: Literal[1, 2] = 2
    tolerance_ppm: float = setting(10.0, ge=0)
    tolerance_da: float = setting(0.005, ge=0)
    step_decay: float = setting(0.5, ge=0, le=1)
    shift_decay: float = setting(0.5, ge=0, le=1)
    max_shift: int = 2
    #: peak weight = (preprocessed, square-root) intensity * m/z ** mz_power: heavier fragments say more
    #: about a structure than small ones any candidate of the formula explains
    mz_power: float = 1.0
    #: learned cleavage weights are raised to this power (tempered) before they weigh explanations
    propensity_power: float = 0.25
    #: peaks above ``precursor m/z - precursor_margin_da`` (the precursor and its isotopes) are left out:
    #: every candidate of the formula explains them
    precursor_margin_da: float = 1.5


    def tolerance_at(self, mz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Match tolerance (Da) at each m/z: ``tolerance_ppm``, but at least ``tolerance_da``."""
        return np.maximum(mz * self.tolerance_ppm * 1e-6, self.tolerance_da)


@dataclass(frozen=True)
class Fragments:
    """Distinct fragment masses of one molecule (neutral, implicit hydrogens kept), the fewest cleavage
    steps that give each, and the log weight of its likeliest cleavage; ``charged`` when the molecule has
    a net formal charge (an ion by itself, unlike a nitro group)."""

    masses: npt.NDArray[np.float64]
    steps: npt.NDArray[np.int8]
    log_weight: npt.NDArray[np.float64]
    charged: bool


@dataclass(frozen=True)
class BondPropensities:
    """How often cutting a bond of each type gives an observed fragment ion (log probabilities, learned
    from training spectra by ``tools/fit_fragment_bonds.py``); a cleavage's weight is the product over its
    cut bonds, so likely cleavages (amide C-N, ester C-O) count more than unlikely ones (aromatic C-C)."""

    log_p: dict[str, float]
    default_log_p: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def of(self, types: Sequence[str]) -> npt.NDArray[np.float64]:
        return np.array([self.log_p.get(t, self.default_log_p) for t in types], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "bond-propensities-1", "default_log_p": self.default_log_p,
                "log_p": dict(sorted(self.log_p.items())), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BondPropensities:
        if data.get("format") != "bond-propensities-1":
            raise ValueError(f"not a bond-propensity table (format {data.get('format')!r})")
        return cls({str(k): float(v) for k, v in data["log_p"].items()}, float(data["default_log_p"]),
                   dict(data.get("provenance", {})))


def bond_types(mol: Any) -> list[str]:
    """Type of every bond: its end elements (lower case when aromatic), order and ring membership, e.g.
    ``C-N:1`` (an amine C-N bond outside rings), ``c-c:1.5:r`` (aromatic ring), ``C-O:2`` (carbonyl)."""
    symbols = []
    for i in range(mol.GetNumAtoms()):   # index access: RDKit's atom / bond sequences are slow to iterate
        atom = mol.GetAtomWithIdx(i)
        symbols.append(atom.GetSymbol().lower() if atom.GetIsAromatic() else atom.GetSymbol())
    out = []
    for k in range(mol.GetNumBonds()):
        b = mol.GetBondWithIdx(k)
        x, y = sorted((symbols[b.GetBeginAtomIdx()], symbols[b.GetEndAtomIdx()]))
        out.append(f"{x}-{y}:{b.GetBondTypeAsDouble():g}{':r' if b.IsInRing() else ''}")
    return out


def atom_table(mol: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[int], list[list[int]], bool]:
    """Atom masses with their hydrogens, bond end points, ring-bond flags and the SSSR bond rings."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    n_atoms, n_bonds = mol.GetNumAtoms(), mol.GetNumBonds()
    masses = np.empty(n_atoms, dtype=np.float64)
    charge = 0
    for i in range(n_atoms):
        a = mol.GetAtomWithIdx(i)
        masses[i] = table.GetMostCommonIsotopeMass(a.GetAtomicNum()) + a.GetTotalNumHs() * HYDROGEN
        charge += a.GetFormalCharge()
    ends = np.empty((n_bonds, 2), dtype=np.int64)
    ring_bonds = []
    for k in range(n_bonds):
        b = mol.GetBondWithIdx(k)
        ends[k, 0], ends[k, 1] = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        ring_bonds.append(int(b.IsInRing()))
    rings = [list(r) for r in mol.GetRingInfo().BondRings()]
    return masses, ends, ring_bonds, rings, charge != 0   # net charge: a permanent ion, not a nitro group


def cleavage_sets(n_bonds: int, ring_bonds: list[int], rings: list[list[int]], max_steps: int
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
    """Component label (smallest atom index) of every atom for every cut mask, by min-label propagation
    (the NumPy reference of :func:`piece_masses`' compiled union-find)."""
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


def piece_masses(masses: npt.NDArray[np.float64], ends: npt.NDArray[np.int64], cut: npt.NDArray[np.bool_]
                 ) -> npt.NDArray[np.float64]:
    """Mass ``[set, label]`` of every piece left by each cut set (label = the piece's smallest atom index;
    zero where no piece has that label); compiled (:func:`engine.queries.kernels.cut_piece_masses`)."""
    from engine.queries.kernels import cut_piece_masses

    return np.asarray(cut_piece_masses(np.ascontiguousarray(masses, dtype=np.float64),
                                       np.ascontiguousarray(ends, dtype=np.int64).reshape(-1, 2),
                                       np.ascontiguousarray(cut, dtype=np.bool_)))


def fragment_molecule(mol: Any, settings: FragmentSettings, propensities: BondPropensities | None = None
                      ) -> Fragments:
    """All distinct fragment masses of an RDKit molecule within ``settings.max_steps`` cleavage steps
    (the intact molecule included, at 0 steps), each with the log weight of its likeliest cleavage: from
    ``propensities`` when given, else ``(steps - 1) * log(step_decay)``."""
    masses, ends, ring_bonds, rings, charged = atom_table(mol)
    n_atoms = masses.shape[0]
    total = float(masses.sum())
    if n_atoms < 2 or ends.shape[0] == 0:
        return Fragments(np.array([total]), np.zeros(1, np.int8), np.zeros(1), charged)
    cut, steps = cleavage_sets(ends.shape[0], ring_bonds, rings, settings.max_steps)
    if propensities is not None:
        set_logw = cut.astype(np.float64) @ propensities.of(bond_types(mol))
    else:
        with np.errstate(divide="ignore"):
            set_logw = np.maximum(steps.astype(np.float64) - 1, 0) * np.log(settings.step_decay)
    comp_mass = piece_masses(masses, ends, cut).ravel()
    comp_set = np.repeat(np.arange(cut.shape[0]), n_atoms)
    real = (comp_mass > 0) & (comp_mass < total - 1e-6)
    frag_mass = np.concatenate([[total], comp_mass[real]])
    frag_steps = np.concatenate([[0], steps[comp_set[real]]]).astype(np.int8)
    frag_logw = np.concatenate([[0.0], set_logw[comp_set[real]]])
    rounded = np.round(frag_mass, 5)
    group = np.unique(rounded, return_inverse=True)[1]
    n_groups = int(group.max()) + 1
    best_steps = np.full(n_groups, 127, np.int8)
    np.minimum.at(best_steps, group, frag_steps)
    best_logw = np.full(n_groups, -np.inf)
    np.maximum.at(best_logw, group, frag_logw)
    first = np.zeros(n_groups, np.int64)
    first[group[::-1]] = np.arange(group.shape[0])[::-1]     # a representative mass per group
    return Fragments(frag_mass[first], best_steps, best_logw, charged)


def fragment_smiles(smiles: str, settings: FragmentSettings, propensities: BondPropensities | None = None
                    ) -> Fragments | None:
    """Fragments of a SMILES; None when RDKit cannot parse it."""
    mol = parse_smiles(smiles)
    return None if mol is None else fragment_molecule(mol, settings, propensities)


def carries_sodium(adduct: str | None) -> bool:
    """Whether a precursor adduct holds sodium (its fragments may carry Na+ instead of a proton)."""
    return bool(adduct and "Na" in adduct)


def charge_carriers(ion_mode: str, sodium: bool, charged: bool) -> list[float]:
    """Mass added to a neutral fragment to make its ion: proton (or sodium) gained in positive mode,
    proton lost in negative mode, and the electron for a molecule with a net charge of its own."""
    if ion_mode == "negative":
        return [-PROTON, *([ELECTRON] if charged else [])]
    return [PROTON, *([SODIUM_ION] if sodium else []), *([-ELECTRON] if charged else [])]


def ion_grid(fragments: Fragments, ion_mode: str, sodium: bool, settings: FragmentSettings
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64],
                        npt.NDArray[np.float64]]:
    """Every fragment ion m/z ``[fragment, hydrogen shift, carrier]`` and its weight as an explanation
    (before tempering), with the shifts and carriers of the last two axes."""
    carriers = np.asarray(charge_carriers(ion_mode, sodium, fragments.charged))
    shifts = np.arange(-settings.max_shift, settings.max_shift + 1)
    step_w = np.exp(fragments.log_weight)
    mz = fragments.masses[:, None, None] + shifts[None, :, None] * HYDROGEN + carriers[None, None, :]
    weight = step_w[:, None, None] * (settings.shift_decay ** np.abs(shifts))[None, :, None] * np.ones_like(mz)
    return mz, weight, shifts, carriers


def ion_table(fragments: Fragments, ion_mode: str, sodium: bool, settings: FragmentSettings
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sorted fragment ion m/z values and the weight of each as an explanation (:func:`ion_grid` flat)."""
    mz, weight, _, _ = ion_grid(fragments, ion_mode, sodium, settings)
    mz, weight = mz.ravel(), weight.ravel()
    order = np.argsort(mz, kind="stable")
    return mz[order], weight[order]


def best_ions(peak_mz: npt.NDArray[np.float64], ion_mz: npt.NDArray[np.float64],
              ion_weight: npt.NDArray[np.float64], settings: FragmentSettings
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per peak, the weight of its best-weighted ion within tolerance (0 when none) and that ion's index
    in the sorted ``ion_mz`` (the first of equal weights; -1 when none)."""
    best = np.zeros(peak_mz.shape[0])
    chosen = np.full(peak_mz.shape[0], -1, dtype=np.int64)
    if ion_mz.shape[0] == 0 or peak_mz.shape[0] == 0:
        return best, chosen
    tol = settings.tolerance_at(peak_mz)
    lo = np.searchsorted(ion_mz, peak_mz - tol, side="left")
    hi = np.searchsorted(ion_mz, peak_mz + tol, side="right")
    for j in range(int((hi - lo).max())):
        idx = lo + j
        ok = idx < hi
        if not ok.any():
            break
        candidate = ion_weight[np.minimum(idx, ion_mz.shape[0] - 1)]
        better = ok & (candidate > best)
        best = np.where(better, candidate, best)
        chosen = np.where(better, idx, chosen)
    return best, chosen


def explained_share(peak_mz: npt.NDArray[np.float64], peak_weight: npt.NDArray[np.float64],
                    ion_mz: npt.NDArray[np.float64], ion_weight: npt.NDArray[np.float64],
                    settings: FragmentSettings) -> float:
    """Share of ``peak_weight`` explained by the ions, each peak by its best-weighted ion within tolerance."""
    total = float(peak_weight.sum())
    if total <= 0 or ion_mz.shape[0] == 0:
        return 0.0
    best, _ = best_ions(peak_mz, ion_mz, ion_weight, settings)
    return float((best * peak_weight).sum() / total)


@dataclass(frozen=True)
class QueryPeaks:
    """One spectrum's peaks as fragment scoring uses them: m/z, weights (zero in the precursor region),
    the m/z values that may be explained (sorted) and the window in which fragments are expected."""

    mz: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]
    explainable: npt.NDArray[np.float64]
    lower: float
    upper: float

    @classmethod
    def build(cls, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.floating[Any]], precursor_mz: float | None,
              settings: FragmentSettings) -> QueryPeaks:
        """Peak weight = intensity * m/z ** ``mz_power``; peaks above ``precursor - precursor_margin_da``
        weigh nothing. Fragments are expected from ``max(50, lowest peak)`` to the precursor region."""
        mz = np.asarray(mz, dtype=np.float64)
        w = np.clip(np.asarray(intensity, dtype=np.float64), 0, None) * mz ** settings.mz_power
        has_precursor = precursor_mz is not None and bool(np.isfinite(precursor_mz))
        if has_precursor:
            w = np.where(mz < float(precursor_mz) - settings.precursor_margin_da, w, 0.0)  # type: ignore[arg-type]
        explainable = np.sort(mz[w > 0])
        lower = max(50.0, float(explainable[0])) if explainable.shape[0] else 50.0
        upper = (float(precursor_mz) - settings.precursor_margin_da if has_precursor  # type: ignore[arg-type]
                 else (float(explainable[-1]) + 1.0 if explainable.shape[0] else 0.0))
        return cls(mz, w, explainable, lower, upper)


def recall_ions(fragments: Fragments, ion_mode: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Ions ``[n, 3]`` of the one-step fragments for hydrogen shifts -1, 0, +1, and each fragment's weight."""
    one = fragments.steps == 1
    carrier = -PROTON if ion_mode == "negative" else PROTON
    ions = fragments.masses[one][:, None] + np.array([-1.0, 0.0, 1.0])[None, :] * HYDROGEN + carrier
    return ions, np.exp(fragments.log_weight[one])


def near_peak(sorted_mz: npt.NDArray[np.float64], ions: npt.NDArray[np.float64], settings: FragmentSettings
              ) -> npt.NDArray[np.bool_]:
    """Whether each ion (any shape) lies within tolerance of one of the non-empty ``sorted_mz``."""
    pos = np.searchsorted(sorted_mz, ions)
    last = sorted_mz.shape[0] - 1
    gap = np.minimum(np.abs(sorted_mz[np.clip(pos - 1, 0, last)] - ions),
                     np.abs(sorted_mz[np.clip(pos, 0, last)] - ions))
    return np.asarray(gap <= settings.tolerance_at(ions))


def predicted_recall_of(ions: npt.NDArray[np.float64], weight: npt.NDArray[np.float64], peaks: QueryPeaks,
                        settings: FragmentSettings) -> float:
    """Share of the candidate's likely one-step fragment ions (weighted by their cleavage weight) that
    the spectrum shows: a peak within tolerance for a hydrogen shift of -1, 0 or +1. Only fragments with
    an ion inside the spectrum's window count."""
    found = peaks.explainable
    if found.shape[0] == 0 or ions.shape[0] == 0:
        return 0.0
    inside = ((ions >= peaks.lower) & (ions < peaks.upper)).any(axis=1)
    seen = near_peak(found, ions, settings).any(axis=1)
    total = float((weight * inside).sum())
    return float((weight * (inside & seen)).sum() / total) if total > 0 else 0.0


def predicted_recall(fragments: Fragments, peak_mz: npt.NDArray[np.float64], ion_mode: str,
                     precursor_mz: float | None, settings: FragmentSettings) -> float:
    """:func:`predicted_recall_of` for peaks given as m/z values (all of them explainable)."""
    peaks = QueryPeaks.build(peak_mz, np.ones_like(peak_mz), precursor_mz, settings)
    ions, weight = recall_ions(fragments, ion_mode)
    return predicted_recall_of(ions, weight, peaks, settings)


@dataclass(frozen=True)
class FragmentWeights:
    """How the fragment evidence enters a candidate's score: ``share * explained share + recall *
    predicted recall - size * log(number of fragment masses)`` (the last term offsets the chance matches
    of candidates whose bonds break into many distinct masses). Chosen on the train split's calibration
    fold (structures the model never trained on; ``benchmarks/model`` reports the effect on val)."""

    share: float = 0.75
    recall: float = 0.75
    size: float = 0.05


@dataclass(frozen=True)
class FragmentEvidence:
    """Fragment evidence of one (spectrum, candidate) pair; NaN everywhere for an unparsable SMILES."""

    explained_share: float
    predicted_recall: float
    n_fragments: int
    score: float


def load_bond_propensities(path: str | Path | None = None) -> BondPropensities:
    """The bond-propensity table at ``path`` (default: the bundled one)."""
    import json

    path = DEFAULT_BOND_TABLE if path is None else Path(path)
    try:
        return BondPropensities.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read bond propensities ({exc})") from None


@dataclass
class FragmentScorer:
    """Fragment evidence for (spectrum, candidate) pairs; each SMILES is fragmented once per scorer.

    ``propensities`` weight each cleavage by how often its bond types break in training spectra (the
    bundled table by default; ``None`` in :meth:`plain` falls back to ``step_decay``). ``processes`` > 1
    fragments the new SMILES of a :meth:`score_pairs` call in that many worker processes (when there are
    more than a thousand of them).
    """

    settings: FragmentSettings = field(default_factory=FragmentSettings)
    weights: FragmentWeights = field(default_factory=FragmentWeights)
    propensities: BondPropensities | None = field(default_factory=load_bond_propensities)
    processes: int = 1
    _fragments: dict[str, Fragments | None] = field(default_factory=dict, repr=False)
    _ions: dict[tuple[str, str, bool], int] = field(default_factory=dict, repr=False)
    _store: _TableStore = field(default_factory=lambda: _TableStore(), repr=False)

    @classmethod
    def plain(cls, settings: FragmentSettings | None = None) -> FragmentScorer:
        """A scorer without learned bond propensities (every one-step cleavage weighs the same)."""
        return cls(settings or FragmentSettings(), propensities=None)

    def __len__(self) -> int:
        """Number of distinct SMILES fragmented so far."""
        return len(self._fragments)

    def fragments(self, smiles: str) -> Fragments | None:
        """Fragments of ``smiles`` (None when it does not parse), computed once."""
        if smiles not in self._fragments:
            self._fragments[smiles] = fragment_smiles(smiles, self.settings, self.propensities)
        return self._fragments[smiles]

    def warm(self, smiles: Sequence[str], *, processes: int = 1) -> None:
        """Fragment every SMILES not cached yet, in ``processes`` worker processes when more than one
        (for large candidate sets: fragmentation is the costly part of scoring)."""
        todo = sorted({s for s in smiles if s not in self._fragments})
        if processes > 1 and len(todo) > 1000:
            from concurrent.futures import ProcessPoolExecutor
            from functools import partial

            work = partial(fragment_smiles, settings=self.settings, propensities=self.propensities)
            with ProcessPoolExecutor(processes) as pool:
                done = list(pool.map(work, todo, chunksize=256))
        else:
            done = [fragment_smiles(s, self.settings, self.propensities) for s in todo]
        self._fragments.update(zip(todo, done, strict=True))

    def temper(self, weight: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Explanation weights as scoring uses them: learned cleavage weights span orders of magnitude,
        so they are raised to ``propensity_power``; the plain step decay is used as is."""
        return weight ** self.settings.propensity_power if self.propensities is not None else weight

    def _table_id(self, smiles: str, ion_mode: str, sodium: bool) -> int:
        """Row of the candidate's ion tables in the store (built on first use); -1 when it does not parse."""
        key = (smiles, ion_mode, sodium)
        table = self._ions.get(key)
        if table is None:
            frags = self.fragments(smiles)
            if frags is None:
                table = -1
            else:
                mz, weight = ion_table(frags, ion_mode, sodium, self.settings)
                weight = self.temper(weight)
                ions, ion_weight = recall_ions(frags, ion_mode)
                table = self._store.add(mz, weight, ions, ion_weight, int(frags.masses.shape[0]))
            self._ions[key] = table
        return table

    def _tables(self, smiles: str, ion_mode: str, sodium: bool) -> _Tables | None:
        table = self._table_id(smiles, ion_mode, sodium)
        return None if table < 0 else self._store.view(table)

    def _evidence(self, peaks: QueryPeaks, smiles: str, ion_mode: str, sodium: bool) -> FragmentEvidence:
        tables = self._tables(smiles, ion_mode, sodium)
        if tables is None:
            nan = float("nan")
            return FragmentEvidence(nan, nan, 0, nan)
        share = explained_share(peaks.mz, peaks.weight, tables.mz, tables.weight, self.settings)
        recall = predicted_recall_of(tables.recall_ions, tables.recall_weight, peaks, self.settings)
        w = self.weights
        score = w.share * share + w.recall * recall - w.size * float(np.log(max(tables.n_fragments, 1)))
        return FragmentEvidence(share, recall, tables.n_fragments, score)

    def evidence(self, mz: npt.NDArray[np.float64], intensity: npt.NDArray[np.floating[Any]],
                 precursor_mz: float | None, ion_mode: str | None, adduct: str | None,
                 smiles: str) -> FragmentEvidence:
        """Fragment evidence of one spectrum for one candidate. Pass preprocessed peaks (square-root
        intensities, as the embedding sees them)."""
        peaks = QueryPeaks.build(mz, intensity, precursor_mz, self.settings)
        return self._evidence(peaks, smiles, ion_mode or "positive", carries_sodium(adduct))

    def score_pairs(self, peaks: Peaks, ion_modes: Sequence[str | None], adducts: Sequence[str | None],
                    query: npt.NDArray[np.int64], smiles: Sequence[str], *, weights: FragmentWeights | None = None
                    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Fragment score (the term candidate ranking adds; by ``weights``, else the scorer's own) and explained
        share of every pair (spectrum ``query[k]`` of ``peaks``, candidate ``smiles[k]``); NaN for unparsable SMILES.

        The same numbers as :meth:`evidence` pair by pair, computed by a compiled kernel over all pairs
        (:func:`engine.queries.kernels.fragment_pair_evidence`) that reads the candidates' ion tables where
        the scorer keeps them (:class:`_TableStore`), ``PAIR_CHUNK`` pairs at a time."""
        from engine.queries.kernels import fragment_pair_evidence

        query = np.asarray(query, dtype=np.int64)
        score = np.full(len(smiles), np.nan)
        share = np.full(len(smiles), np.nan)
        if query.shape[0] == 0:
            return score, share
        if self.processes > 1:
            self.warm(smiles, processes=self.processes)
        used, query = np.unique(query, return_inverse=True)   # pack only the spectra that have pairs
        packed = _PackedQueries.build(peaks, used, self.settings)
        ion_modes, adducts = [ion_modes[i] for i in used.tolist()], [adducts[i] for i in used.tolist()]
        modes = [m or "positive" for m in ion_modes]
        sodium = [carries_sodium(a) for a in adducts]
        w, s = weights if weights is not None else self.weights, self.settings
        store = self._store
        for a in range(0, query.shape[0], PAIR_CHUNK):
            q = query[a:a + PAIR_CHUNK]
            table_of = np.array([self._table_id(smi, modes[i], sodium[i])
                                 for i, smi in zip(q.tolist(), smiles[a:a + PAIR_CHUNK], strict=True)], dtype=np.int64)
            ok = table_of >= 0
            if not ok.any():
                continue
            sh, rc = fragment_pair_evidence(
                packed.mz, packed.weight, packed.offsets, packed.found, packed.found_offsets, packed.lower,
                packed.upper, store.mz.data, store.weight.data, store.offsets.data, store.recall_ions.data,
                store.recall_weight.data, store.recall_offsets.data, q[ok], table_of[ok], s.tolerance_ppm,
                s.tolerance_da)
            rows = np.flatnonzero(ok) + a
            size = np.log(np.maximum(store.n_fragments.data[table_of[ok]], 1))
            share[rows] = sh
            score[rows] = w.share * sh + w.recall * rc - w.size * size
        return score, share


#: Pairs keyed to their candidate tables and scored per kernel call.
PAIR_CHUNK = 200_000


@dataclass(frozen=True)
class _PackedQueries:
    """:class:`QueryPeaks` of a batch of spectra, CSR packed for the pair kernel."""

    mz: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]
    offsets: npt.NDArray[np.int64]
    found: npt.NDArray[np.float64]
    found_offsets: npt.NDArray[np.int64]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]

    @classmethod
    def build(cls, peaks: Peaks, spectra: npt.NDArray[np.int64], settings: FragmentSettings) -> _PackedQueries:
        """Spectra ``spectra`` (indices into ``peaks``), in that order."""
        starts = peaks.offsets
        built = [QueryPeaks.build(peaks.mz[starts[i]:starts[i + 1]], peaks.intensity[starts[i]:starts[i + 1]],
                                  float(peaks.precursor_mz[i]), settings) for i in spectra.tolist()]
        return cls(_concat([q.mz for q in built]), _concat([q.weight for q in built]),
                   offsets_of([q.mz.shape[0] for q in built]), _concat([q.explainable for q in built]),
                   offsets_of([q.explainable.shape[0] for q in built]),
                   np.array([q.lower for q in built], dtype=np.float64),
                   np.array([q.upper for q in built], dtype=np.float64))


class _Growing:
    """A flat array that grows by doubling its buffer (amortised constant-time appends)."""

    def __init__(self, dtype: type, first: Sequence[float] = ()) -> None:
        self._buffer: npt.NDArray[Any] = np.zeros(max(1024, len(first)), dtype=dtype)
        self.size = 0
        if first:
            self.append(np.asarray(first, dtype=dtype))

    def append(self, values: npt.NDArray[Any]) -> None:
        end = self.size + values.shape[0]
        if end > self._buffer.shape[0]:
            grown = np.zeros(max(end, 2 * self._buffer.shape[0]), dtype=self._buffer.dtype)
            grown[:self.size] = self._buffer[:self.size]
            self._buffer = grown
        self._buffer[self.size:end] = values
        self.size = end

    @property
    def data(self) -> npt.NDArray[Any]:
        return self._buffer[:self.size]


class _TableStore:
    """Every candidate's ion tables, CSR packed in growing buffers: what the pair kernel reads, with no
    per-call packing (recall ions flat, three per recall fragment)."""

    def __init__(self) -> None:
        self.mz = _Growing(np.float64)
        self.weight = _Growing(np.float64)
        self.offsets = _Growing(np.int64, [0])
        self.recall_ions = _Growing(np.float64)
        self.recall_weight = _Growing(np.float64)
        self.recall_offsets = _Growing(np.int64, [0])
        self.n_fragments = _Growing(np.int64)

    def add(self, mz: npt.NDArray[np.float64], weight: npt.NDArray[np.float64], recall_ions: npt.NDArray[np.float64],
            recall_weight: npt.NDArray[np.float64], n_fragments: int) -> int:
        """Store one candidate's tables; their row."""
        self.mz.append(np.asarray(mz, dtype=np.float64))
        self.weight.append(np.asarray(weight, dtype=np.float64))
        self.offsets.append(np.array([self.mz.size], dtype=np.int64))
        ions = np.asarray(recall_ions, dtype=np.float64).reshape(-1, 3)
        self.recall_ions.append(ions.ravel())
        self.recall_weight.append(np.asarray(recall_weight, dtype=np.float64))
        self.recall_offsets.append(np.array([self.recall_weight.size], dtype=np.int64))
        self.n_fragments.append(np.array([n_fragments], dtype=np.int64))
        return self.n_fragments.size - 1

    def view(self, row: int) -> _Tables:
        """The tables of one row (views into the buffers)."""
        a, b = self.offsets.data[row], self.offsets.data[row + 1]
        ra, rb = self.recall_offsets.data[row], self.recall_offsets.data[row + 1]
        return _Tables(self.mz.data[a:b], self.weight.data[a:b], self.recall_ions.data[3 * ra:3 * rb].reshape(-1, 3),
                       self.recall_weight.data[ra:rb], int(self.n_fragments.data[row]))


def _concat(arrays: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    return np.ascontiguousarray(np.concatenate(arrays) if arrays else np.zeros(0), dtype=np.float64)


@dataclass(frozen=True)
class _Tables:
    """Per (candidate, ion mode, carrier): explanation ions and recall ions."""

    mz: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]
    recall_ions: npt.NDArray[np.float64]
    recall_weight: npt.NDArray[np.float64]
    n_fragments: int
