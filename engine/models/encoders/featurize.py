"""RDKit molecular graphs as compact integer tensors, and vectorised batching of many graphs.

Each atom is a row of categorical indices (one column per feature in :data:`ATOM_FEATURES`), each
bond appears twice (both directions) with a row of :data:`BOND_FEATURES` indices. The encoder turns
every column into a learned embedding and sums them (one-hot times a matrix, without the one-hot).
Hydrogens stay implicit (counted per heavy atom).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.core.errors import InvalidMoleculeError
from engine.models.rdkit_util import parse_smiles

ELEMENTS: tuple[str, ...] = ("C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B", "Si", "Se", "As",
                             "H", "Na", "K", "Li", "Mg", "Ca", "Fe", "Co", "Cu", "Zn", "Al", "Sn", "Hg")
_ELEMENT_INDEX = {e: i for i, e in enumerate(ELEMENTS)}
_HYBRIDISATIONS = ("SP", "SP2", "SP3", "SP3D", "SP3D2", "S")
_CHIRALITY = ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW")
_BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
_BOND_STEREO = ("STEREONONE", "STEREOANY", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS")

#: (name, number of categories) of each atom column; the last category of each means "other".
ATOM_FEATURES: tuple[tuple[str, int], ...] = (
    ("element", len(ELEMENTS) + 1),
    ("degree", 7),             # 0..5, 6+
    ("formal_charge", 5),      # -2..+2 (clipped)
    ("num_hs", 5),             # 0..3, 4+
    ("aromatic", 2),
    ("in_ring", 2),
    ("hybridisation", len(_HYBRIDISATIONS) + 1),
    ("chirality", len(_CHIRALITY) + 1),
)
#: (name, number of categories) of each bond column.
BOND_FEATURES: tuple[tuple[str, int], ...] = (
    ("bond_type", len(_BOND_TYPES) + 1),
    ("conjugated", 2),
    ("in_ring", 2),
    ("stereo", len(_BOND_STEREO) + 1),
)
ATOM_FEATURE_SIZES: tuple[int, ...] = tuple(n for _, n in ATOM_FEATURES)
BOND_FEATURE_SIZES: tuple[int, ...] = tuple(n for _, n in BOND_FEATURES)


@dataclass(frozen=True)
class MolGraph:
    """One molecule: ``x`` int8 ``[atoms, 8]``, ``edge_index`` int32 ``[2, 2*bonds]``, ``edge_attr`` int8."""

    x: npt.NDArray[np.int8]
    edge_index: npt.NDArray[np.int32]
    edge_attr: npt.NDArray[np.int8]

    @property
    def n_atoms(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_bonds(self) -> int:
        return int(self.edge_attr.shape[0] // 2)


def _index(value: str, vocab: tuple[str, ...]) -> int:
    try:
        return vocab.index(value)
    except ValueError:
        return len(vocab)


def mol_from_smiles(smiles: str) -> Any:
    """Parse ``smiles`` with RDKit or raise :class:`InvalidMoleculeError` naming it."""
    mol = parse_smiles(smiles)
    if mol is None:
        raise InvalidMoleculeError(f"invalid SMILES {smiles!r}: RDKit cannot parse it",
                                   record=str(smiles), reason="invalid_smiles")
    return mol


def featurize_mol(mol: Any) -> MolGraph:
    """Graph tensors of an RDKit molecule."""
    atoms = mol.GetAtoms()
    x = np.empty((mol.GetNumAtoms(), len(ATOM_FEATURES)), dtype=np.int8)
    for i, atom in enumerate(atoms):
        x[i, 0] = _ELEMENT_INDEX.get(atom.GetSymbol(), len(ELEMENTS))
        x[i, 1] = min(atom.GetDegree(), 6)
        x[i, 2] = min(max(atom.GetFormalCharge(), -2), 2) + 2
        x[i, 3] = min(atom.GetTotalNumHs(), 4)
        x[i, 4] = int(atom.GetIsAromatic())
        x[i, 5] = int(atom.IsInRing())
        x[i, 6] = _index(str(atom.GetHybridization()), _HYBRIDISATIONS)
        x[i, 7] = _index(str(atom.GetChiralTag()), _CHIRALITY)
    n_bonds = mol.GetNumBonds()
    edge_index = np.empty((2, 2 * n_bonds), dtype=np.int32)
    edge_attr = np.empty((2 * n_bonds, len(BOND_FEATURES)), dtype=np.int8)
    for j, bond in enumerate(mol.GetBonds()):
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feats = (_index(str(bond.GetBondType()), _BOND_TYPES), int(bond.GetIsConjugated()),
                 int(bond.IsInRing()), _index(str(bond.GetStereo()), _BOND_STEREO))
        edge_index[:, 2 * j] = (a, b)
        edge_index[:, 2 * j + 1] = (b, a)
        edge_attr[2 * j] = feats
        edge_attr[2 * j + 1] = feats
    return MolGraph(x=x, edge_index=edge_index, edge_attr=edge_attr)


def featurize(smiles: str) -> MolGraph:
    """Graph tensors of a SMILES; an unparsable SMILES raises :class:`InvalidMoleculeError`."""
    return featurize_mol(mol_from_smiles(smiles))


@dataclass(frozen=True)
class GraphStore:
    """Many graphs in flat arrays (CSR over atoms and edges), cheap to save and to batch from."""

    x: npt.NDArray[np.int8]
    edge_index: npt.NDArray[np.int32]      # local atom indices within each molecule
    edge_attr: npt.NDArray[np.int8]
    atom_ptr: npt.NDArray[np.int64]        # [n_molecules + 1]
    edge_ptr: npt.NDArray[np.int64]        # [n_molecules + 1]

    def __len__(self) -> int:
        return int(self.atom_ptr.shape[0] - 1)

    @classmethod
    def from_graphs(cls, graphs: Sequence[MolGraph]) -> GraphStore:
        n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
        n_edges = np.array([g.edge_attr.shape[0] for g in graphs], dtype=np.int64)
        atom_ptr = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)
        edge_ptr = np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64)
        na, nb = len(ATOM_FEATURES), len(BOND_FEATURES)
        return cls(
            x=np.concatenate([g.x for g in graphs]) if graphs else np.zeros((0, na), np.int8),
            edge_index=(np.concatenate([g.edge_index for g in graphs], axis=1) if graphs
                        else np.zeros((2, 0), np.int32)),
            edge_attr=(np.concatenate([g.edge_attr for g in graphs]) if graphs
                       else np.zeros((0, nb), np.int8)),
            atom_ptr=atom_ptr, edge_ptr=edge_ptr)

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"x": self.x, "edge_index": self.edge_index, "edge_attr": self.edge_attr,
                "atom_ptr": self.atom_ptr, "edge_ptr": self.edge_ptr}

    @classmethod
    def from_arrays(cls, arrays: Any) -> GraphStore:
        return cls(x=arrays["x"], edge_index=arrays["edge_index"], edge_attr=arrays["edge_attr"],
                   atom_ptr=arrays["atom_ptr"], edge_ptr=arrays["edge_ptr"])

    def batch(self, rows: npt.NDArray[np.int64]) -> GraphBatch:
        """Gather molecules ``rows`` into one disjoint-union graph (vectorised, no per-molecule loop)."""
        rows = np.asarray(rows, dtype=np.int64)
        a0, a1 = self.atom_ptr[rows], self.atom_ptr[rows + 1]
        e0, e1 = self.edge_ptr[rows], self.edge_ptr[rows + 1]
        n_atoms, n_edges = a1 - a0, e1 - e0
        new_atom_start = np.concatenate([[0], np.cumsum(n_atoms)[:-1]]) if len(rows) else np.zeros(0, np.int64)
        atom_idx = concat_ranges(a0, n_atoms)
        edge_idx = concat_ranges(e0, n_edges)
        shift = np.repeat(new_atom_start, n_edges)
        return GraphBatch(
            x=self.x[atom_idx],
            edge_index=self.edge_index[:, edge_idx].astype(np.int64) + shift,
            edge_attr=self.edge_attr[edge_idx],
            batch=np.repeat(np.arange(len(rows), dtype=np.int64), n_atoms),
            n_graphs=len(rows))


def concat_ranges(starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Concatenate ``range(s, s + n)`` for every pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    out = np.ones(total, dtype=np.int64)
    ends = np.cumsum(lengths)
    nz = lengths > 0
    first = np.concatenate([[0], ends[:-1]])[nz]
    out[first] = starts[nz]
    out[first[1:]] -= (starts[nz][:-1] + lengths[nz][:-1] - 1)
    return np.cumsum(out)


@dataclass(frozen=True)
class GraphBatch:
    """A disjoint union of graphs, in numpy; ``batch`` maps each atom to its graph."""

    x: npt.NDArray[np.int8]
    edge_index: npt.NDArray[np.int64]
    edge_attr: npt.NDArray[np.int8]
    batch: npt.NDArray[np.int64]
    n_graphs: int
